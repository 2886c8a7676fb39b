// Command franzgo is the franz-go contender of `make bench`: the order consumer a Go team
// would write instead of running the worker, after franz-go's own example
// (examples/goroutine_per_partition_consuming/autocommit_marks): one goroutine per assigned
// partition, AutoCommitMarks, a record marked only after it succeeded or was dead-lettered,
// marked offsets committed on revoke and at exit.
//
// Each order is decoded with encoding/json and checked with exactly the worker's rules
// (order.go). With -fault-per-million the messages the worker's fault hash chooses fail
// their first -fault-times attempts with a retryable error; a failure is retried in place
// after -backoff (the partition waits, as the worker's blocking mode does) up to
// -max-attempts, then the record goes to -dlq-topic; an invalid order goes there at once.
//
// It runs until SIGTERM (the bench stops it once the group's committed offsets reach the
// log end) and prints "bench-ready" when it first owns partitions.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type tp struct {
	topic     string
	partition int32
}

type settings struct {
	dlqTopic        string
	faultPerMillion uint64
	faultTimes      int
	maxAttempts     int
	backoff         time.Duration
}

var errInjected = errors.New("injected failure")

// pconsumer works through one partition's records in order.
type pconsumer struct {
	cl        *kgo.Client
	s         *settings
	topic     string
	partition int32
	quit      chan struct{}
	done      chan struct{}
	recs      chan []*kgo.Record
}

var processed, deadLettered atomic.Int64

func (pc *pconsumer) consume() {
	defer close(pc.done)
	for {
		select {
		case <-pc.quit:
			return
		case recs := <-pc.recs:
			for _, r := range recs {
				if !pc.handle(r) {
					return
				}
				pc.cl.MarkCommitRecords(r)
			}
		}
	}
}

// handle processes r with retries; false when the partition was taken away meanwhile (the
// record stays unmarked for the next owner).
func (pc *pconsumer) handle(r *kgo.Record) bool {
	chosen := pc.s.faultPerMillion > 0 && faultHash(r.Topic, r.Partition, r.Offset)%1_000_000 < pc.s.faultPerMillion
	for attempt := 1; ; attempt++ {
		var err error
		if chosen && attempt <= pc.s.faultTimes {
			err = fmt.Errorf("%w %d of %d", errInjected, attempt, pc.s.faultTimes)
		} else {
			_, err = decodeAndValidate(r.Value)
		}
		if err == nil {
			processed.Add(1)
			return true
		}
		if errors.Is(err, errInvalid) || attempt >= pc.s.maxAttempts {
			return pc.deadLetter(r, err)
		}
		select {
		case <-pc.quit:
			return false
		case <-time.After(pc.s.backoff):
		}
	}
}

func (pc *pconsumer) deadLetter(r *kgo.Record, cause error) bool {
	for {
		dl := &kgo.Record{
			Topic: pc.s.dlqTopic,
			Key:   r.Key,
			Value: r.Value,
			Headers: append(append([]kgo.RecordHeader(nil), r.Headers...),
				kgo.RecordHeader{Key: "error", Value: []byte(cause.Error())},
				kgo.RecordHeader{Key: "original-topic", Value: []byte(r.Topic)},
				kgo.RecordHeader{Key: "original-partition", Value: []byte(fmt.Sprint(r.Partition))},
				kgo.RecordHeader{Key: "original-offset", Value: []byte(fmt.Sprint(r.Offset))}),
		}
		if err := pc.cl.ProduceSync(context.Background(), dl).FirstErr(); err == nil {
			deadLettered.Add(1)
			return true
		} else {
			log.Printf("dead-lettering %s/%d@%d: %v (retrying)", r.Topic, r.Partition, r.Offset, err)
		}
		select {
		case <-pc.quit:
			return false
		case <-time.After(pc.s.backoff):
		}
	}
}

type splitConsume struct {
	mu        sync.Mutex
	consumers map[tp]*pconsumer
	s         *settings
	ready     sync.Once
}

func (s *splitConsume) assigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for topic, partitions := range assigned {
		for _, p := range partitions {
			pc := &pconsumer{
				cl: cl, s: s.s, topic: topic, partition: p,
				quit: make(chan struct{}), done: make(chan struct{}),
				recs: make(chan []*kgo.Record, 5),
			}
			s.consumers[tp{topic, p}] = pc
			go pc.consume()
		}
	}
	s.ready.Do(func() { fmt.Println("bench-ready") })
}

// stop ends the goroutines of the given partitions and waits for them.
func (s *splitConsume) stop(partitions map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var wg sync.WaitGroup
	for topic, ps := range partitions {
		for _, p := range ps {
			pc, ok := s.consumers[tp{topic, p}]
			if !ok {
				continue
			}
			delete(s.consumers, tp{topic, p})
			close(pc.quit)
			wg.Add(1)
			go func() { <-pc.done; wg.Done() }()
		}
	}
	wg.Wait()
}

func (s *splitConsume) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	s.stop(revoked)
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		log.Printf("commit on revoke: %v", err)
	}
}

func (s *splitConsume) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.stop(lost)
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma-separated bootstrap brokers")
	topic := flag.String("topic", "order.placed", "topic to consume")
	group := flag.String("group", "inventory", "consumer group id")
	s := &settings{}
	flag.StringVar(&s.dlqTopic, "dlq-topic", "order.placed.dlq", "dead-letter topic")
	flag.Uint64Var(&s.faultPerMillion, "fault-per-million", 0, "messages per million that fail (the worker's fault hash)")
	flag.IntVar(&s.faultTimes, "fault-times", 2, "failed attempts of a chosen message before it passes")
	flag.IntVar(&s.maxAttempts, "max-attempts", 3, "attempts before a failing record is dead-lettered")
	flag.DurationVar(&s.backoff, "backoff", 100*time.Millisecond, "pause before a retry")
	flag.Parse()

	sc := &splitConsume{consumers: map[tp]*pconsumer{}, s: s}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(*brokers, ",")...),
		kgo.ConsumerGroup(*group),
		kgo.ConsumeTopics(*topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(sc.assigned),
		kgo.OnPartitionsRevoked(sc.revoked),
		kgo.OnPartitionsLost(sc.lost),
		kgo.AutoCommitMarks(),
		// The worker's auto.commit.interval.ms (franz-go's default is 5 s).
		kgo.AutoCommitInterval(time.Second),
		kgo.BlockRebalanceOnPoll(),
	)
	if err != nil {
		log.Fatalf("client: %v", err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	for {
		fetches := cl.PollRecords(ctx, 10000)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			// BlockRebalanceOnPoll: leaving the group in Close waits for this.
			cl.AllowRebalance()
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			log.Printf("fetch error %s/%d: %v", t, p, err)
		})
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			sc.mu.Lock()
			pc, ok := sc.consumers[tp{p.Topic, p.Partition}]
			sc.mu.Unlock()
			if ok {
				pc.recs <- p.Records
			}
		})
		cl.AllowRebalance()
	}
	// Exit: stop the partition goroutines after the records they hold, commit what is
	// marked, leave the group.
	sc.mu.Lock()
	all := map[string][]int32{}
	for k := range sc.consumers {
		all[k.topic] = append(all[k.topic], k.partition)
	}
	sc.mu.Unlock()
	sc.stop(all)
	commitCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	if err := cl.CommitMarkedOffsets(commitCtx); err != nil {
		log.Printf("final commit: %v", err)
	}
	cl.Close()
	fmt.Printf("{\"processed\":%d,\"dead_lettered\":%d}\n", processed.Load(), deadLettered.Load())
}
