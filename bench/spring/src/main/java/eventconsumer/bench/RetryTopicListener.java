package eventconsumer.bench;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Iterator;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.header.Header;
import org.springframework.boot.autoconfigure.condition.ConditionalOnProperty;
import org.springframework.kafka.annotation.BackOff;
import org.springframework.kafka.annotation.KafkaListener;
import org.springframework.kafka.annotation.RetryableTopic;
import org.springframework.kafka.retrytopic.SameIntervalTopicReuseStrategy;
import org.springframework.kafka.support.KafkaHeaders;
import org.springframework.stereotype.Component;
import tools.jackson.databind.json.JsonMapper;

/**
 * The failure mix with non-blocking retries, the counterpart of the worker's retryTopics
 * mode: three attempts, 100 ms apart, through one retry topic
 * ({@code <topic><bench.retry-suffix>}, created by the bench with the source's partitions),
 * then the DLT.
 */
@Component
@ConditionalOnProperty(name = "bench.mode", havingValue = "retry-topics")
public class RetryTopicListener {
    private final JsonMapper mapper;
    private final Faults faults;

    public RetryTopicListener(JsonMapper mapper, Faults faults) {
        this.mapper = mapper;
        this.faults = faults;
    }

    @RetryableTopic(
            attempts = "3",
            backOff = @BackOff(delay = 100),
            exclude = InvalidOrder.class,
            sameIntervalTopicReuseStrategy = SameIntervalTopicReuseStrategy.SINGLE_TOPIC,
            retryTopicSuffix = "${bench.retry-suffix}",
            dltTopicSuffix = "${bench.dlt-suffix}",
            autoCreateTopics = "false")
    @KafkaListener(topics = "${bench.topic}", groupId = "${bench.group}", concurrency = "${bench.concurrency:1}")
    public void onOrder(ConsumerRecord<byte[], byte[]> record) {
        // A retried record names its source in the headers the recoverer added first.
        String topic = record.topic();
        int partition = record.partition();
        long offset = record.offset();
        Header t = first(record, KafkaHeaders.DLT_ORIGINAL_TOPIC);
        Header p = first(record, KafkaHeaders.DLT_ORIGINAL_PARTITION);
        Header o = first(record, KafkaHeaders.DLT_ORIGINAL_OFFSET);
        if (t != null && p != null && o != null) {
            topic = new String(t.value(), StandardCharsets.UTF_8);
            partition = ByteBuffer.wrap(p.value()).getInt();
            offset = ByteBuffer.wrap(o.value()).getLong();
        }
        faults.check(topic, partition, offset);
        OrderRules.check(mapper, record.value());
    }

    private static Header first(ConsumerRecord<?, ?> record, String name) {
        Iterator<Header> it = record.headers().headers(name).iterator();
        return it.hasNext() ? it.next() : null;
    }
}
