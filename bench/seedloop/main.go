// Command seedloop is the seed tutorial's order consumer, reproduced for the benchmark:
// kafka.NewReader with a GroupID, then FetchMessage, decode the order, CommitMessages, one
// message at a time, as in the guide's inventory service. It stops after -n messages and
// prints one JSON line with its count and time.
//
// The guide logs one line per order item ("Reserving ..."); that logging is left out so the
// comparison measures the consume/commit loop, not a terminal.
//
// -commit-interval 0 is kafka-go's default: CommitMessages commits synchronously, one
// broker round trip per message. -commit-interval 1s lets kafka-go commit in the
// background once a second.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	kafka "github.com/segmentio/kafka-go"
)

// OrderItem and OrderPlacedEvent are the guide's shared types.
type OrderItem struct {
	ProductID string  `json:"product_id"`
	Quantity  int     `json:"quantity"`
	Price     float64 `json:"price"`
}

type OrderPlacedEvent struct {
	OrderID    string      `json:"order_id"`
	CustomerID string      `json:"customer_id"`
	Items      []OrderItem `json:"items"`
	Total      float64     `json:"total"`
	CreatedAt  string      `json:"created_at"`
}

// DecodeOrder is the guide's decoder.
func DecodeOrder(data []byte) (OrderPlacedEvent, error) {
	var e OrderPlacedEvent
	return e, json.Unmarshal(data, &e)
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma-separated bootstrap brokers")
	topic := flag.String("topic", "order.placed", "topic to consume")
	group := flag.String("group", "inventory-service", "consumer group id")
	n := flag.Int("n", 1000, "stop after this many messages")
	commitInterval := flag.Duration("commit-interval", 0, "kafka-go CommitInterval (0: synchronous commit per CommitMessages)")
	timeout := flag.Duration("timeout", 30*time.Minute, "give up after this long")
	flag.Parse()

	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers:        strings.Split(*brokers, ","),
		Topic:          *topic,
		GroupID:        *group,
		MinBytes:       1,
		MaxBytes:       10e6, // 10MB, as in the guide
		CommitInterval: *commitInterval,
		StartOffset:    kafka.FirstOffset,
	})

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	started := time.Now()
	count, decodeErrors, commitErrors := 0, 0, 0
	for count < *n {
		msg, err := reader.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				log.Printf("timed out after %d messages: %v", count, err)
				_ = reader.Close()
				os.Exit(1)
			}
			log.Printf("fetch error: %v", err)
			continue
		}
		order, err := DecodeOrder(msg.Value)
		if err != nil || order.OrderID == "" {
			decodeErrors++
		}
		// Only commit after successful processing (the guide commits decode failures too).
		if err := reader.CommitMessages(ctx, msg); err != nil {
			commitErrors++
			log.Printf("commit error: %v", err)
		}
		count++
	}
	elapsed := time.Since(started)
	// Close flushes the pending background commit when CommitInterval > 0.
	if err := reader.Close(); err != nil {
		log.Printf("close: %v", err)
	}
	fmt.Printf("{\"messages\":%d,\"decode_errors\":%d,\"commit_errors\":%d,\"seconds\":%.3f}\n",
		count, decodeErrors, commitErrors, elapsed.Seconds())
}
