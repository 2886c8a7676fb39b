package eventconsumer.bench;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/**
 * The Spring Kafka contender of {@code make bench}: the order consumer a team would write
 * with Spring Boot instead of running the worker. A {@code @KafkaListener} decodes each order
 * with the framework's JSON mapper and applies exactly the worker's validation rules
 * ({@link OrderRules}); failures go through {@code DefaultErrorHandler} with a
 * {@code DeadLetterPublishingRecoverer} (mode {@code blocking}, {@link BlockingListener}) or
 * through {@code @RetryableTopic} (mode {@code retry-topics}, {@link RetryTopicListener}).
 *
 * <p>Settings are Spring properties given on the command line by the bench:
 * {@code --bench.topic}, {@code --bench.group}, {@code --bench.concurrency},
 * {@code --bench.mode}, {@code --bench.dlq-topic}, {@code --bench.fault-per-million},
 * {@code --bench.fault-times}, {@code --spring.kafka.bootstrap-servers}. It runs until
 * SIGTERM and prints {@code bench-ready} when it first owns partitions.
 */
@SpringBootApplication
public class OrdersApp {
    public static void main(String[] args) {
        SpringApplication.run(OrdersApp.class, args);
    }
}
