// Runnable examples, run against a live server that TestMain starts and names in
// COURIER_SERVER, with alice's token in COURIER_TOKEN.

package courier_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"testing"

	courier "github.com/courier-rtm/courier/client/go"
	"github.com/courier-rtm/courier/client/go/internal/testkit"
)

// exampleServer is the server of the examples.
var exampleServer *testkit.Server

func TestMain(m *testing.M) {
	server, err := testkit.StartProcess()
	if err != nil {
		fmt.Fprintln(os.Stderr, "the examples' server:", err)
		os.Exit(1)
	}
	exampleServer = server
	os.Setenv("COURIER_SERVER", server.URL())
	os.Setenv("COURIER_TOKEN", testkit.Token("alice"))
	code := m.Run()
	server.Stop()
	os.Exit(code)
}

// Alice uploads a note, sends it to bob (who is offline, so it is kept for him), and
// downloads it back.
func Example() {
	ctx := context.Background()
	alice, err := courier.Dial(ctx, os.Getenv("COURIER_SERVER"), courier.WithToken(os.Getenv("COURIER_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()

	note := []byte("hello from courier")
	media, err := alice.Upload(ctx, bytes.NewReader(note), int64(len(note)), courier.UploadOptions{FileName: "note.txt"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(media.FileName, media.Size, media.Kind)

	receipt, err := alice.SendPeerMessage(ctx, "bob", media.FileMessage(), courier.SendOptions{Offline: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(receipt.Delivery)

	var got bytes.Buffer
	if _, err := alice.Download(ctx, media.MediaID, &got, courier.DownloadOptions{}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.String())
	// Output:
	// note.txt 18 file
	// cached
	// hello from courier
}

// Carol listens on her feed and sorts what arrives with a type switch.
func ExampleClient_Subscribe() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	server := os.Getenv("COURIER_SERVER")
	carol, err := courier.Dial(ctx, server, courier.WithToken(testkit.Token("carol")))
	if err != nil {
		log.Fatal(err)
	}
	defer carol.Close()
	alice, err := courier.Dial(ctx, server, courier.WithToken(os.Getenv("COURIER_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()

	feed := carol.Subscribe(ctx)
	for event := range feed.Events() {
		switch e := event.(type) {
		case courier.Ready:
			fmt.Println("listening;", e.OfflineCount, "offline messages")
			if _, err := alice.SendPeerMessage(ctx, "carol", courier.Text("hi carol"), courier.SendOptions{}); err != nil {
				log.Fatal(err)
			}
		case courier.ReceivedMessage:
			if text, ok := e.Message.(courier.TextMessage); ok {
				fmt.Printf("%s: %s\n", e.From, text.Text)
			}
			feed.Close()
		case courier.Disconnected:
			fmt.Println("reconnecting:", e.Err)
		}
	}
	// Output:
	// listening; 0 offline messages
	// alice: hi carol
}
