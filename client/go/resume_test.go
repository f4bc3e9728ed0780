// Resumable uploads (issue 15) and cursors and idempotent sends (issue 18): scenarios
// 10 to 12 of tests/scenarios.md, against a real server.

package courier_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	courier "github.com/courier-rtm/courier/client/go"
	"github.com/courier-rtm/courier/client/go/internal/testkit"
)

const part = 256 * 1024

func TestResumableUploadPausesResumesAndSurvivesARestart(t *testing.T) {
	server := testkit.Start(t, "--upload-part-size", "262144")
	data := testkit.Pattern(2*part+1000, 15)
	path := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	alice := dial(t, server, "alice")
	paused, err := alice.UploadResumable(ctx, path, courier.ResumableOptions{StopAfterParts: 1})
	if err != nil {
		t.Fatalf("paused upload: %v", err)
	}
	if paused.Media != nil || paused.ResumedFrom != 0 || paused.CommittedSize != part {
		t.Fatalf("paused: %+v", paused)
	}
	raw, err := os.ReadFile(path + courier.UploadStateSuffix)
	if err != nil {
		t.Fatalf("no state file: %v", err)
	}
	var state map[string]any
	if err := json.Unmarshal(raw, &state); err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(data)
	if state["upload_id"] != paused.UploadID || state["server"] != server.URL() ||
		state["size"] != float64(len(data)) || state["sha256"] != hex.EncodeToString(digest[:]) ||
		state["part_size"] != float64(part) {
		t.Fatalf("state file %v", state)
	}

	server.Restart(t)
	again := dial(t, server, "alice")
	var seen []courier.Progress
	done, err := again.UploadResumable(ctx, path, courier.ResumableOptions{
		UploadOptions: courier.UploadOptions{OnProgress: func(p courier.Progress) { seen = append(seen, p) }},
	})
	if err != nil {
		t.Fatalf("resumed upload: %v", err)
	}
	if done.Media == nil || done.UploadID != paused.UploadID || done.ResumedFrom != part {
		t.Fatalf("resumed: %+v", done)
	}
	if done.Media.Size != int64(len(data)) || !bytes.Equal(done.Media.SHA256[:], digest[:]) {
		t.Fatalf("record %+v", done.Media)
	}
	if _, err := os.Stat(path + courier.UploadStateSuffix); !os.IsNotExist(err) {
		t.Fatalf("the state file stayed after the commit: %v", err)
	}
	if len(seen) == 0 || seen[0].Done != part || seen[len(seen)-1].Done != int64(len(data)) {
		t.Fatalf("progress %v", seen)
	}
	var back bytes.Buffer
	if _, err := again.Download(ctx, done.Media.MediaID, &back, courier.DownloadOptions{}); err != nil || !bytes.Equal(back.Bytes(), data) {
		t.Fatalf("download: %v (%d bytes)", err, back.Len())
	}
}

func TestStaleUploadStateStartsOver(t *testing.T) {
	server := testkit.Start(t, "--upload-part-size", "262144")
	data := testkit.Pattern(part+10, 16)
	path := filepath.Join(t.TempDir(), "again.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	alice := dial(t, server, "alice")
	paused, err := alice.UploadResumable(ctx, path, courier.ResumableOptions{StopAfterParts: 1})
	if err != nil {
		t.Fatal(err)
	}
	statePath := path + courier.UploadStateSuffix
	raw, _ := os.ReadFile(statePath)
	var state map[string]any
	if err := json.Unmarshal(raw, &state); err != nil {
		t.Fatal(err)
	}
	state["upload_id"] = "00000000000000000000000000000000" // unknown: NOT_FOUND
	raw, _ = json.Marshal(state)
	if err := os.WriteFile(statePath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	done, err := alice.UploadResumable(ctx, path, courier.ResumableOptions{})
	if err != nil {
		t.Fatalf("upload after a stale state: %v", err)
	}
	if done.ResumedFrom != 0 || done.UploadID == paused.UploadID || done.Media == nil || done.Media.Size != int64(len(data)) {
		t.Fatalf("a stale state file did not start over: %+v", done)
	}
}

func TestCancelledResumableUploadLeavesNoState(t *testing.T) {
	server := testkit.Start(t, "--upload-part-size", "262144")
	path := filepath.Join(t.TempDir(), "cancelled.bin")
	if err := os.WriteFile(path, testkit.Pattern(3*part, 17), 0o644); err != nil {
		t.Fatal(err)
	}
	alice := dial(t, server, "alice")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	transfer, err := alice.StartUploadResumable(ctx, path, courier.ResumableOptions{
		UploadOptions: courier.UploadOptions{OnProgress: func(p courier.Progress) {
			if p.Done >= part {
				cancel()
			}
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	within(t, transfer.Done(), "the cancelled upload's end")
	if _, err := transfer.Wait(); !errors.Is(err, courier.ErrCancelled) {
		t.Fatalf("cancelled upload: %v", err)
	}
	if _, err := os.Stat(path + courier.UploadStateSuffix); !os.IsNotExist(err) {
		t.Fatalf("the state file stayed after a cancel: %v", err)
	}
}

func TestSubscribeAfterACursorGetsWhatWasMissed(t *testing.T) {
	server := testkit.Start(t)
	ctx := context.Background()
	alice, bob := dial(t, server, "alice"), dial(t, server, "bob")
	for _, c := range []*courier.Client{alice, bob} {
		if err := c.JoinChannel(ctx, "team"); err != nil {
			t.Fatal(err)
		}
	}
	first := bob.Subscribe(ctx)
	ready(t, first)
	if _, err := alice.SendPeerMessage(ctx, "bob", courier.Text("one"), courier.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendChannelMessage(ctx, "team", courier.Text("two")); err != nil {
		t.Fatal(err)
	}
	one, two := nextMessage(t, first), nextMessage(t, first)
	if one.Message != courier.Text("one") || two.Message != courier.Text("two") || one.Cursor == 0 || two.Cursor <= one.Cursor {
		t.Fatalf("got %+v then %+v", one, two)
	}
	if first.Cursor() != two.Cursor {
		t.Fatalf("Cursor() %d, the last message's %d", first.Cursor(), two.Cursor)
	}
	first.Close()
	waitOffline(t, alice, "bob")

	if _, err := alice.SendPeerMessage(ctx, "bob", courier.Text("three"), courier.SendOptions{Offline: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendChannelMessage(ctx, "team", courier.Text("four")); err != nil {
		t.Fatal(err)
	}
	back := bob.SubscribeAfter(ctx, two.Cursor)
	t.Cleanup(back.Close)
	var before []courier.ReceivedMessage
	var live courier.Ready
	for found := false; !found; {
		switch e := nextEvent(t, back).(type) {
		case courier.ReceivedMessage:
			before = append(before, e)
		case courier.Ready:
			live, found = e, true
		}
	}
	if len(before) != 2 || before[0].Message != courier.Text("three") || before[1].Message != courier.Text("four") {
		t.Fatalf("after %d: %+v", two.Cursor, before)
	}
	if before[0].Cursor <= two.Cursor || before[1].Cursor <= before[0].Cursor || live.EventsLost || live.Cursor < before[1].Cursor {
		t.Fatalf("cursors %d, %d after %d; ready %+v", before[0].Cursor, before[1].Cursor, two.Cursor, live)
	}
}

func TestRepeatedClientMessageIDDeliversOnce(t *testing.T) {
	server := testkit.Start(t)
	ctx := context.Background()
	alice, bob := dial(t, server, "alice"), dial(t, server, "bob")
	for _, c := range []*courier.Client{alice, bob} {
		if err := c.JoinChannel(ctx, "room"); err != nil {
			t.Fatal(err)
		}
	}
	sub := subscribe(t, bob)
	send := func(id string) courier.Receipt {
		t.Helper()
		receipt, err := alice.SendPeerMessage(ctx, "bob", courier.Text("once"), courier.SendOptions{ClientMessageID: id})
		if err != nil {
			t.Fatal(err)
		}
		return receipt
	}
	first, again := send("go-once-1"), send("go-once-1")
	if again.MessageID != first.MessageID || again.Delivery != first.Delivery {
		t.Fatalf("repeat %+v, first %+v", again, first)
	}
	channel, err := alice.SendChannelMessage(ctx, "room", courier.Text("once"), courier.SendOptions{ClientMessageID: "go-once-2"})
	if err != nil {
		t.Fatal(err)
	}
	channelAgain, err := alice.SendChannelMessage(ctx, "room", courier.Text("once"), courier.SendOptions{ClientMessageID: "go-once-2"})
	if err != nil || channelAgain.MessageID != channel.MessageID {
		t.Fatalf("channel repeat %+v (%v), first %+v", channelAgain, err, channel)
	}
	a, b := send(""), send("")
	if a.MessageID == b.MessageID {
		t.Fatal("two sends without an ID were taken for one")
	}
	want := []string{first.MessageID, channel.MessageID, a.MessageID, b.MessageID}
	for i, id := range want {
		if got := nextMessage(t, sub); got.MessageID != id {
			t.Fatalf("message %d: %s, expected %s", i, got.MessageID, id)
		}
	}
	select {
	case event := <-sub.Events():
		if m, ok := event.(courier.ReceivedMessage); ok {
			t.Fatalf("delivered again: %+v", m)
		}
	case <-time.After(500 * time.Millisecond):
	}
}

// waitOffline waits (at most 10 s) until user is offline.
func waitOffline(t *testing.T, client *courier.Client, user string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		statuses, err := client.QueryOnlineStatus(context.Background(), user)
		if err == nil && len(statuses) == 1 && !statuses[0].Online {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s still online after 10 s", user)
}

func TestASendIsRetriedUntilTheServerIsUpAndDeliveredOnce(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	listener.Close()
	alice, err := courier.Dial(context.Background(), "http://"+addr, courier.WithToken(testkit.Token("alice")),
		courier.WithRetries(40, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	sent := make(chan error, 1)
	go func() {
		_, err := alice.SendPeerMessage(context.Background(), "bob", courier.Text("retried"), courier.SendOptions{Offline: true})
		sent <- err
	}()
	select {
	case err := <-sent:
		t.Fatalf("the send finished while nothing listens: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	server := testkit.StartAt(t, addr)
	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("the retried send failed: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the send did not finish once the server was up")
	}
	bob := dial(t, server, "bob")
	sub := bob.Subscribe(context.Background())
	t.Cleanup(sub.Close)
	count, before := ready(t, sub)
	if count != 1 || len(before) != 1 || before[0].Message != courier.Text("retried") {
		t.Fatalf("bob got %d cached: %+v", count, before)
	}
}

func TestAReconnectingFeedResumesAfterItsLastCursor(t *testing.T) {
	server := testkit.Start(t)
	ctx := context.Background()
	alice := dial(t, server, "alice")
	// bob's feed waits 2 s before reconnecting, so that alice's message is sent while bob
	// is away: only a reconnection after the last cursor gets it, and nothing twice.
	bob := dial(t, server, "bob", courier.WithRetries(4, 2*time.Second))
	join := func() {
		t.Helper()
		for _, c := range []*courier.Client{alice, bob} {
			if err := c.JoinChannel(ctx, "team"); err != nil {
				t.Fatal(err)
			}
		}
	}
	join()
	sub := subscribe(t, bob)
	if _, err := alice.SendChannelMessage(ctx, "team", courier.Text("before the break")); err != nil {
		t.Fatal(err)
	}
	one := nextMessage(t, sub)
	server.Restart(t)
	for found := false; !found; {
		_, found = nextEvent(t, sub).(courier.Disconnected)
	}
	join() // memberships do not outlive the server process
	sent, err := alice.SendChannelMessage(ctx, "team", courier.Text("during the break"))
	if err != nil {
		t.Fatal(err)
	}
	var replayed []courier.ReceivedMessage
	for found := false; !found; {
		switch e := nextEvent(t, sub).(type) {
		case courier.ReceivedMessage:
			replayed = append(replayed, e)
		case courier.Ready:
			found = true
		}
	}
	if len(replayed) != 1 || replayed[0].MessageID != sent.MessageID || replayed[0].Cursor <= one.Cursor {
		t.Fatalf("after the reconnection: %+v (the last cursor before it %d)", replayed, one.Cursor)
	}
	select {
	case event := <-sub.Events():
		if m, ok := event.(courier.ReceivedMessage); ok {
			t.Fatalf("delivered again: %+v", m)
		}
	case <-time.After(500 * time.Millisecond):
	}
}
