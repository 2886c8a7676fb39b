package eventconsumer.bench;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The worker's fault injection ({@code --fault-fail-percent}, worker/src/testing.rs): the same
 * messages, chosen by FNV-1a over topic, partition and offset, fail their first
 * {@code times} attempts with a retryable {@link InjectedFailure}.
 */
public final class Faults {
    private final long perMillion;
    private final int times;
    private final ConcurrentHashMap<String, Integer> failures = new ConcurrentHashMap<>();

    public Faults(long perMillion, int times) {
        // The value worker/src/testing.rs pins: a different hash would fail other messages.
        if (hash("order.placed", 3, 12345) != 0x05cb2d1634d27258L) {
            throw new IllegalStateException("the fault hash differs from the worker's");
        }
        this.perMillion = perMillion;
        this.times = times;
    }

    /** FNV-1a over the topic, then partition and offset as little-endian bytes. */
    public static long hash(String topic, int partition, long offset) {
        long h = 0xcbf29ce484222325L;
        ByteBuffer tail = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN);
        tail.putInt(partition).putLong(offset);
        for (byte b : topic.getBytes(StandardCharsets.UTF_8)) {
            h ^= (b & 0xff);
            h *= 0x100000001b3L;
        }
        for (byte b : tail.array()) {
            h ^= (b & 0xff);
            h *= 0x100000001b3L;
        }
        return h;
    }

    /** Throws for an attempt at the source record topic/partition/offset that must fail. */
    public void check(String topic, int partition, long offset) {
        if (perMillion == 0 || Long.remainderUnsigned(hash(topic, partition, offset), 1_000_000L) >= perMillion) {
            return;
        }
        String key = topic + "/" + partition + "/" + offset;
        int failed = failures.getOrDefault(key, 0);
        if (failed >= times) {
            failures.remove(key);
            return;
        }
        failures.put(key, failed + 1);
        throw new InjectedFailure("injected failure " + (failed + 1) + " of " + times);
    }
}
