// Scenario 15 of tests/scenarios.md, three_replicas (issue 31): one client over three
// servers sharing a NATS JetStream bus and a media folder spreads its calls over all
// three, and its subscription and calls move to another when one dies.

package courier_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	courier "github.com/courier-rtm/courier/client/go"
	"github.com/courier-rtm/courier/client/go/internal/testkit"
)

func threeReplicas(t *testing.T) {
	bus := testkit.StartNATS(t)
	storage := t.TempDir()
	var servers []*testkit.Server
	var urls []string
	for range 3 {
		server := testkit.Start(t, "--bus", bus, "--storage", storage)
		servers = append(servers, server)
		urls = append(urls, server.URL())
	}
	ctx := context.Background()
	replicas := func(user string) *courier.Client {
		t.Helper()
		client, err := courier.DialReplicas(ctx, urls, courier.WithToken(testkit.Token(user)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		return client
	}
	alice, bob := replicas("alice"), replicas("bob")

	// check: 30 unary calls reach all three servers. round_robin connects to every
	// replica at the first call and uses each once it is connected: first wait
	// (bounded) until each has answered a call, then count 30 more.
	const query = `method="QueryPeersOnlineStatus"`
	answered := func() []int64 {
		var counts []int64
		for _, server := range servers {
			counts = append(counts, server.MetricSum(t, "courier_grpc_requests_total", query))
		}
		return counts
	}
	for start := time.Now(); slices.Contains(answered(), 0); {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("after 10 s of calls, the servers answered %v", answered())
		}
		if _, err := alice.QueryOnlineStatus(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
	}
	before := answered()
	for i := range 30 {
		if _, err := alice.QueryOnlineStatus(ctx, "bob"); err != nil {
			t.Fatalf("query %d: %v", i+1, err)
		}
	}
	for i, server := range servers {
		if rose := server.MetricSum(t, "courier_grpc_requests_total", query) - before[i]; rose == 0 {
			t.Fatalf("server %d answered none of the 30 calls", i+1)
		} else {
			t.Logf("server %d answered %d of the 30 calls", i+1, rose)
		}
	}

	// check: bob's subscription moves to another server when its own is killed, and
	// resumes after its last cursor: all 10 messages, each once, in order.
	feed := subscribe(t, bob)
	send := func(i int) {
		t.Helper()
		// Offline messaging on: a message sent while bob is between servers is kept.
		if _, err := alice.SendPeerMessage(ctx, "bob", courier.Text(fmt.Sprint("message ", i)), courier.SendOptions{Offline: true}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	var got []courier.ReceivedMessage
	for i := 1; i <= 5; i++ {
		send(i)
		got = append(got, nextMessage(t, feed))
	}
	holder := -1
	for i, server := range servers {
		if server.Metric(t, "courier_subscribers") == 1 {
			holder = i
		}
	}
	if holder < 0 {
		t.Fatal("no server reports bob's stream (courier_subscribers)")
	}
	servers[holder].Kill()
	t.Logf("killed server %d, which held bob's stream", holder+1)
	send(6) // while bob's feed is away; retried on another replica if it met the dead one
	// Calls that are safe to repeat never fail while two replicas are up: one that
	// met the dead replica is retried on another.
	for i := range 10 {
		if _, err := alice.QueryOnlineStatus(ctx, "bob"); err != nil {
			t.Fatalf("query %d after the kill: %v", i+1, err)
		}
	}
	disconnected, reconnected := false, false
	for !reconnected {
		switch e := nextEvent(t, feed).(type) {
		case courier.Disconnected:
			disconnected = true
		case courier.Reconnected:
			reconnected = true
		case courier.ReceivedMessage:
			got = append(got, e)
		}
	}
	if !disconnected {
		t.Fatal("no Disconnected before Reconnected")
	}
	for i := 7; i <= 10; i++ {
		send(i)
	}
	deadline := time.After(30 * time.Second)
	for len(got) < 10 {
		select {
		case event, ok := <-feed.Events():
			if !ok {
				t.Fatalf("the feed ended: %v", feed.Err())
			}
			if m, ok := event.(courier.ReceivedMessage); ok {
				got = append(got, m)
			}
		case <-deadline:
			t.Fatalf("bob has %d of 10 messages", len(got))
		}
	}
	for i, m := range got {
		if m.Message != courier.Text(fmt.Sprint("message ", i+1)) || m.From != "alice" {
			t.Fatalf("message %d is %+v", i+1, m)
		}
		if i > 0 && m.Cursor <= got[i-1].Cursor {
			t.Fatalf("cursor %d after %d", m.Cursor, got[i-1].Cursor)
		}
	}
	select {
	case event := <-feed.Events():
		if m, ok := event.(courier.ReceivedMessage); ok {
			t.Fatalf("an 11th message: %+v", m)
		}
	case <-time.After(500 * time.Millisecond):
	}
	moved := int64(0)
	for i, server := range servers {
		if i != holder {
			moved += server.Metric(t, "courier_subscribers")
		}
	}
	if moved != 1 {
		t.Fatalf("the other servers hold %d streams of bob's", moved)
	}

	// check: uploads and downloads still work through the clients after the kill.
	for i := range 3 {
		data := testkit.Pattern(mib+i, byte(20+i))
		media, err := alice.Upload(ctx, bytes.NewReader(data), int64(len(data)), courier.UploadOptions{FileName: "after.bin"})
		if err != nil {
			t.Fatalf("upload %d after the kill: %v", i+1, err)
		}
		var back bytes.Buffer
		if _, err := bob.Download(ctx, media.MediaID, &back, courier.DownloadOptions{}); err != nil || !bytes.Equal(back.Bytes(), data) {
			t.Fatalf("download %d after the kill: %v", i+1, err)
		}
	}
}
