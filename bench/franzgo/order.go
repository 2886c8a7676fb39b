package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// OrderItem and OrderPlaced are the worker's OrderPlaced (worker/src/events.rs) as a Go team
// would declare them for encoding/json.
type OrderItem struct {
	ProductID string  `json:"product_id"`
	Quantity  int64   `json:"quantity"`
	Price     float64 `json:"price"`
}

type OrderPlaced struct {
	OrderID    string      `json:"order_id"`
	CustomerID string      `json:"customer_id"`
	Items      []OrderItem `json:"items"`
	Total      float64     `json:"total"`
	// A pointer so that a missing field is refused, as the worker's decoder does.
	CreatedAt *string `json:"created_at"`
}

// errInvalid marks a non-retryable failure: undecodable bytes or a broken rule.
var errInvalid = errors.New("invalid order")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, args...))
}

// maxAmount: orders above ten billion are not real orders (the worker's MAX_AMOUNT).
const maxAmount = 10_000_000_000.0

// cents converts a JSON amount to whole cents with the worker's rules: ≥ 0, finite, at
// most ten billion, at most two decimals (within a millionth of a cent).
func cents(amount float64) (int64, string) {
	if math.IsNaN(amount) || math.IsInf(amount, 0) || amount < 0 {
		return 0, "must be a number ≥ 0"
	}
	if amount > maxAmount {
		return 0, "is larger than any real amount"
	}
	scaled := amount * 100
	rounded := math.Round(scaled)
	if math.Abs(scaled-rounded) > 1e-6 {
		return 0, "has more than two decimals"
	}
	return int64(rounded), ""
}

func blank(s string) bool { return strings.TrimSpace(s) == "" }

// decodeAndValidate applies exactly the worker's rules (OrderPlaced::validate) and returns
// the total in cents.
func decodeAndValidate(value []byte) (int64, error) {
	var o OrderPlaced
	if err := json.Unmarshal(value, &o); err != nil {
		return 0, invalid("invalid JSON: %v", err)
	}
	if o.CreatedAt == nil {
		return 0, invalid("invalid JSON: missing field created_at")
	}
	if blank(o.OrderID) {
		return 0, invalid("order_id: is required")
	}
	if blank(o.CustomerID) {
		return 0, invalid("customer_id: is required")
	}
	if len(o.Items) == 0 {
		return 0, invalid("items: must not be empty")
	}
	var sum int64
	for i, it := range o.Items {
		if blank(it.ProductID) {
			return 0, invalid("items[%d].product_id: is required", i)
		}
		if it.Quantity <= 0 {
			return 0, invalid("items[%d].quantity: must be > 0", i)
		}
		price, why := cents(it.Price)
		if why != "" {
			return 0, invalid("items[%d].price: %s", i, why)
		}
		if price != 0 && it.Quantity > math.MaxInt64/price {
			return 0, invalid("items[%d]: line total overflows", i)
		}
		line := price * it.Quantity
		if sum > math.MaxInt64-line {
			return 0, invalid("items: sum overflows")
		}
		sum += line
	}
	total, why := cents(o.Total)
	if why != "" {
		return 0, invalid("total: %s", why)
	}
	if total != sum {
		return 0, invalid("total: is %d.%02d but the items sum to %d.%02d", total/100, total%100, sum/100, sum%100)
	}
	return total, nil
}

// faultHash is the worker's fault_hash (worker/src/testing.rs): FNV-1a over the topic, then
// the partition and offset as little-endian bytes, so the same messages fail here.
func faultHash(topic string, partition int32, offset int64) uint64 {
	h := uint64(0xcbf29ce484222325)
	const prime = 0x100000001b3
	for i := 0; i < len(topic); i++ {
		h ^= uint64(topic[i])
		h *= prime
	}
	for i := 0; i < 4; i++ {
		h ^= uint64(byte(uint32(partition) >> (8 * i)))
		h *= prime
	}
	for i := 0; i < 8; i++ {
		h ^= uint64(byte(uint64(offset) >> (8 * i)))
		h *= prime
	}
	return h
}
