package eventconsumer.bench;

/** A failure injected by {@code --bench.fault-per-million}: retryable. */
public class InjectedFailure extends RuntimeException {
    public InjectedFailure(String message) {
        super(message);
    }
}
