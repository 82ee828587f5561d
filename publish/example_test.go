package publish_test

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rig-go/rig/publish"
)

func Example() {
	nc, err := nats.Connect(natsURL) // such as nats://127.0.0.1:4222
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// A back-end's id for the message makes a retry safe: it is stored,
	// and delivered, once.
	ack, err := publish.ToUser(ctx, js, "alice@example.com", []byte(`{"text":"Your order shipped"}`),
		publish.WithID("order-42-shipped"))
	if err != nil {
		panic(err) // not stored: retry with the same id
	}
	fmt.Println("stored as event", ack.ID)

	again, err := publish.ToUser(ctx, js, "alice@example.com", []byte(`{"text":"Your order shipped"}`),
		publish.WithID("order-42-shipped"))
	if err != nil {
		panic(err)
	}
	fmt.Println("retry stored again:", !again.Duplicate)

	subject, _ := publish.Subject("alice@example.com")
	fmt.Println("subject", subject)
	// Output:
	// stored as event order-42-shipped
	// retry stored again: false
	// subject user.alice%40example%2Ecom
}
