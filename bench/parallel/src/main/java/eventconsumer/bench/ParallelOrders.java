package eventconsumer.bench;

import io.confluent.parallelconsumer.ParallelConsumerOptions;
import io.confluent.parallelconsumer.ParallelConsumerOptions.CommitMode;
import io.confluent.parallelconsumer.ParallelConsumerOptions.ProcessingOrder;
import io.confluent.parallelconsumer.ParallelStreamProcessor;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * The Parallel Consumer beside the worker's {@code ordering: key}: each record of the topic
 * is POSTed to the bench's slow sink, up to {@code --max-concurrency} at once, records of one
 * key in offset order ({@code ProcessingOrder.KEY}). A failed POST throws, so the Parallel
 * Consumer retries it (its default: retry after a delay); offsets are committed by its
 * periodic asynchronous commit. Prints {@code bench-ready} once it owns partitions; SIGTERM
 * drains and closes it.
 */
public final class ParallelOrders {
  public static void main(String[] argv) throws Exception {
    Map<String, String> args = parse(argv);
    String sink = args.get("sink-url");
    String ordering = args.getOrDefault("ordering", "KEY");
    int concurrency = Integer.parseInt(args.getOrDefault("max-concurrency", "256"));

    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args.get("bootstrap"));
    p.put(ConsumerConfig.GROUP_ID_CONFIG, args.get("group"));
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p);

    ParallelConsumerOptions<String, String> options =
        ParallelConsumerOptions.<String, String>builder()
            .ordering(ProcessingOrder.valueOf(ordering))
            .maxConcurrency(concurrency)
            .commitMode(CommitMode.PERIODIC_CONSUMER_ASYNCHRONOUS)
            .consumer(consumer)
            // Auto commit is off above; its reflective check fails on this client line.
            .ignoreReflectiveAccessExceptionsForAutoCommitDisabledCheck(true)
            .build();
    ParallelStreamProcessor<String, String> pc =
        ParallelStreamProcessor.createEosStreamProcessor(options);

    HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    URI uri = URI.create(sink);
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  pc.closeDrainFirst();
                  stopped.countDown();
                }));

    pc.subscribe(
        List.of(args.get("topic")),
        new ConsumerRebalanceListener() {
          private boolean said;

          @Override
          public void onPartitionsRevoked(Collection<TopicPartition> partitions) {}

          @Override
          public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            if (!said && !partitions.isEmpty()) {
              said = true;
              System.out.println("bench-ready " + partitions.size() + " partitions");
            }
          }
        });
    pc.poll(
        ctx -> {
          var record = ctx.getSingleConsumerRecord();
          HttpRequest request =
              HttpRequest.newBuilder(uri)
                  .header("Content-Type", "application/json")
                  .header("Idempotency-Key", record.key() == null ? "" : record.key())
                  .timeout(Duration.ofSeconds(10))
                  .POST(HttpRequest.BodyPublishers.ofString(record.value()))
                  .build();
          try {
            HttpResponse<Void> answer = http.send(request, HttpResponse.BodyHandlers.discarding());
            if (answer.statusCode() >= 300) {
              throw new IllegalStateException("sink answered HTTP " + answer.statusCode());
            }
          } catch (java.io.IOException e) {
            throw new IllegalStateException("sink request failed: " + e, e);
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
          }
        });
    stopped.await();
  }

  private static Map<String, String> parse(String[] argv) {
    Map<String, String> args = new HashMap<>();
    for (int i = 0; i + 1 < argv.length; i += 2) {
      if (!argv[i].startsWith("--")) {
        throw new IllegalArgumentException("expected --name value, got " + argv[i]);
      }
      args.put(argv[i].substring(2), argv[i + 1]);
    }
    for (String required : List.of("bootstrap", "topic", "group", "sink-url")) {
      if (!args.containsKey(required)) {
        throw new IllegalArgumentException("--" + required + " is required");
      }
    }
    return args;
  }
}
