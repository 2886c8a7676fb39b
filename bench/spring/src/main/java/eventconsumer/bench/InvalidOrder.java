package eventconsumer.bench;

/** Undecodable bytes or a broken rule: not retryable, dead-lettered at once. */
public class InvalidOrder extends RuntimeException {
    public InvalidOrder(String message) {
        super(message);
    }
}
