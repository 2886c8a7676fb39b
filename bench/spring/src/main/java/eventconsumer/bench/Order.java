package eventconsumer.bench;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;
import java.util.List;

/** The worker's {@code OrderPlaced} (worker/src/events.rs): unknown fields are ignored there too. */
@JsonIgnoreProperties(ignoreUnknown = true)
public record Order(
        @JsonProperty("order_id") String orderId,
        @JsonProperty("customer_id") String customerId,
        @JsonProperty("items") List<Item> items,
        @JsonProperty("total") Double total,
        @JsonProperty("created_at") String createdAt) {

    @JsonIgnoreProperties(ignoreUnknown = true)
    public record Item(
            @JsonProperty("product_id") String productId,
            @JsonProperty("quantity") Long quantity,
            @JsonProperty("price") Double price) {}
}
