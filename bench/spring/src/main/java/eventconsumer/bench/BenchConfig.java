package eventconsumer.bench;

import java.util.Collection;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.common.TopicPartition;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.kafka.autoconfigure.ConcurrentKafkaListenerContainerFactoryConfigurer;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.kafka.config.ConcurrentKafkaListenerContainerFactory;
import org.springframework.kafka.core.ConsumerFactory;
import org.springframework.kafka.core.KafkaTemplate;
import org.springframework.kafka.listener.ConsumerAwareRebalanceListener;
import org.springframework.kafka.listener.DeadLetterPublishingRecoverer;
import org.springframework.kafka.listener.DefaultErrorHandler;
import org.springframework.util.backoff.FixedBackOff;

/** The listener container factory Boot would build, plus the error handling of each mode. */
@Configuration
public class BenchConfig {

    @Bean
    public Faults faults(
            @Value("${bench.fault-per-million:0}") long perMillion,
            @Value("${bench.fault-times:2}") int times) {
        return new Faults(perMillion, times);
    }

    @Bean
    public ConcurrentKafkaListenerContainerFactory<Object, Object> kafkaListenerContainerFactory(
            ConcurrentKafkaListenerContainerFactoryConfigurer configurer,
            ConsumerFactory<Object, Object> consumerFactory,
            KafkaTemplate<Object, Object> template,
            @Value("${bench.mode:blocking}") String mode,
            @Value("${bench.dlq-topic}") String dlqTopic) {
        ConcurrentKafkaListenerContainerFactory<Object, Object> factory =
                new ConcurrentKafkaListenerContainerFactory<>();
        configurer.configure(factory, consumerFactory);
        AtomicBoolean ready = new AtomicBoolean();
        factory.getContainerProperties().setConsumerRebalanceListener(new ConsumerAwareRebalanceListener() {
            @Override
            public void onPartitionsAssigned(Consumer<?, ?> consumer, Collection<TopicPartition> partitions) {
                if (!partitions.isEmpty() && ready.compareAndSet(false, true)) {
                    System.out.println("bench-ready");
                }
            }
        });
        if (!mode.equals("retry-topics")) {
            // Invalid orders are dead-lettered at once; anything else is retried twice,
            // 100 ms apart (the worker's --max-attempts 3 with a 100 ms backoff), then
            // dead-lettered.
            DeadLetterPublishingRecoverer recoverer = new DeadLetterPublishingRecoverer(
                    template, (record, e) -> new TopicPartition(dlqTopic, -1));
            DefaultErrorHandler handler = new DefaultErrorHandler(recoverer, new FixedBackOff(100L, 2L));
            handler.addNotRetryableExceptions(InvalidOrder.class);
            factory.setCommonErrorHandler(handler);
        }
        return factory;
    }
}
