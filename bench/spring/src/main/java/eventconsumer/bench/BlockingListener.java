package eventconsumer.bench;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.springframework.boot.autoconfigure.condition.ConditionalOnProperty;
import org.springframework.kafka.annotation.KafkaListener;
import org.springframework.stereotype.Component;
import tools.jackson.databind.json.JsonMapper;

/** Healthy runs and the blocking failure mix: retries through DefaultErrorHandler. */
@Component
@ConditionalOnProperty(name = "bench.mode", havingValue = "blocking", matchIfMissing = true)
public class BlockingListener {
    private final JsonMapper mapper;
    private final Faults faults;

    public BlockingListener(JsonMapper mapper, Faults faults) {
        this.mapper = mapper;
        this.faults = faults;
    }

    @KafkaListener(topics = "${bench.topic}", groupId = "${bench.group}", concurrency = "${bench.concurrency:1}")
    public void onOrder(ConsumerRecord<byte[], byte[]> record) {
        faults.check(record.topic(), record.partition(), record.offset());
        OrderRules.check(mapper, record.value());
    }
}
