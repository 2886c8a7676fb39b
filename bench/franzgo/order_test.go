package main

import (
	"errors"
	"testing"
)

func TestValidOrderAndBrokenRules(t *testing.T) {
	ok := `{"order_id":"o","customer_id":"c","items":[{"product_id":"p","quantity":2,"price":29.99},{"product_id":"q","quantity":1,"price":0.1}],"total":60.08,"created_at":"t","channel":"web"}`
	if c, err := decodeAndValidate([]byte(ok)); err != nil || c != 6008 {
		t.Fatalf("valid order: %d %v", c, err)
	}
	for _, bad := range []string{
		`{not json`,
		`{"order_id":"o","customer_id":"c","items":[{"product_id":"p","quantity":1,"price":1}],"total":1}`,
		`{"order_id":" ","customer_id":"c","items":[{"product_id":"p","quantity":1,"price":1}],"total":1,"created_at":"t"}`,
		`{"order_id":"o","customer_id":"c","items":[],"total":0,"created_at":"t"}`,
		`{"order_id":"o","customer_id":"c","items":[{"product_id":"p","quantity":0,"price":1}],"total":0,"created_at":"t"}`,
		`{"order_id":"o","customer_id":"c","items":[{"product_id":"p","quantity":1,"price":1.001}],"total":1,"created_at":"t"}`,
		`{"order_id":"o","customer_id":"c","items":[{"product_id":"p","quantity":1,"price":1}],"total":1.01,"created_at":"t"}`,
	} {
		if _, err := decodeAndValidate([]byte(bad)); !errors.Is(err, errInvalid) {
			t.Errorf("%s: want an invalid-order error, got %v", bad, err)
		}
	}
}

func TestFaultHashMatchesTheWorkers(t *testing.T) {
	// FNV-1a of "t" then 0i32 and 0i64 little-endian, as worker/src/testing.rs computes it.
	h := uint64(0xcbf29ce484222325)
	for _, b := range append([]byte("t"), make([]byte, 12)...) {
		h ^= uint64(b)
		h *= 0x100000001b3
	}
	if got := faultHash("t", 0, 0); got != h {
		t.Fatalf("faultHash = %x, want %x", got, h)
	}
	// The value worker/src/testing.rs pins.
	if got := faultHash("order.placed", 3, 12345); got != 0x05cb2d1634d27258 {
		t.Fatalf("faultHash(order.placed, 3, 12345) = %x, want 5cb2d1634d27258", got)
	}
	if faultHash("t", 0, 1) == faultHash("t", 1, 0) {
		t.Fatal("partition and offset must not commute")
	}
}
