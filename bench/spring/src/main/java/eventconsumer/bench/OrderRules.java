package eventconsumer.bench;

import tools.jackson.core.JacksonException;
import tools.jackson.databind.json.JsonMapper;

/** Exactly the worker's decode and validation rules (OrderPlaced::validate in worker/src/events.rs). */
public final class OrderRules {
    /** Orders above ten billion are not real orders (the worker's MAX_AMOUNT). */
    private static final double MAX_AMOUNT = 10_000_000_000.0;

    private OrderRules() {}

    /** Decodes and validates one order value; returns its total in cents. */
    public static long check(JsonMapper mapper, byte[] value) {
        if (value == null) {
            throw new InvalidOrder("invalid JSON: the message has no value");
        }
        Order o;
        try {
            o = mapper.readValue(value, Order.class);
        } catch (JacksonException e) {
            throw new InvalidOrder("invalid JSON: " + e.getOriginalMessage());
        }
        // Every field is required by the worker's decoder.
        if (o.orderId() == null || o.customerId() == null || o.items() == null
                || o.total() == null || o.createdAt() == null) {
            throw new InvalidOrder("invalid JSON: missing field");
        }
        if (o.orderId().isBlank()) {
            throw new InvalidOrder("order_id: is required");
        }
        if (o.customerId().isBlank()) {
            throw new InvalidOrder("customer_id: is required");
        }
        if (o.items().isEmpty()) {
            throw new InvalidOrder("items: must not be empty");
        }
        long sum = 0;
        for (int i = 0; i < o.items().size(); i++) {
            Order.Item item = o.items().get(i);
            if (item.productId() == null || item.quantity() == null || item.price() == null) {
                throw new InvalidOrder("invalid JSON: missing field in items[" + i + "]");
            }
            if (item.productId().isBlank()) {
                throw new InvalidOrder("items[" + i + "].product_id: is required");
            }
            if (item.quantity() <= 0) {
                throw new InvalidOrder("items[" + i + "].quantity: must be > 0");
            }
            long price = cents("items[" + i + "].price", item.price());
            try {
                sum = Math.addExact(sum, Math.multiplyExact(price, item.quantity()));
            } catch (ArithmeticException e) {
                throw new InvalidOrder("items[" + i + "]: line total overflows");
            }
        }
        long total = cents("total", o.total());
        if (total != sum) {
            throw new InvalidOrder(String.format("total: is %d.%02d but the items sum to %d.%02d",
                    total / 100, total % 100, sum / 100, sum % 100));
        }
        return total;
    }

    private static long cents(String field, double amount) {
        if (!Double.isFinite(amount) || amount < 0) {
            throw new InvalidOrder(field + ": must be a number ≥ 0");
        }
        if (amount > MAX_AMOUNT) {
            throw new InvalidOrder(field + ": is larger than any real amount");
        }
        double scaled = amount * 100.0;
        // Math.round rounds half up; the worker's f64::round rounds half away from zero:
        // the same for amounts ≥ 0.
        double rounded = Math.floor(scaled + 0.5);
        if (Math.abs(scaled - rounded) > 1e-6) {
            throw new InvalidOrder(field + ": has more than two decimals");
        }
        return (long) rounded;
    }
}
