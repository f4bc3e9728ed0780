// A nats-server with JetStream for the tests of several replicas sharing a bus.

package testkit

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NATSBinary is the nats-server binary: $COURIER_NATS_SERVER (which the test command
// sets), else nats-server on the PATH, else "".
func NATSBinary() string {
	if bin := os.Getenv("COURIER_NATS_SERVER"); bin != "" {
		return bin
	}
	if bin, err := exec.LookPath("nats-server"); err == nil {
		return bin
	}
	return ""
}

// StartNATS starts a nats-server with JetStream on a free port of 127.0.0.1, in a
// folder of its own (at most 4 GB on disk, 256 MB in memory), stops it when the test ends, and returns its URL. With no
// nats-server it skips the test, or fails it when COURIER_TEST_REQUIRE_NATS=1 (as the
// test command sets it).
func StartNATS(t testing.TB) string {
	t.Helper()
	bin := NATSBinary()
	if bin == "" {
		if os.Getenv("COURIER_TEST_REQUIRE_NATS") == "1" {
			t.Fatal("no nats-server: set COURIER_NATS_SERVER (client/go/run-tests builds one) or put nats-server on the PATH")
		}
		t.Skip("no nats-server: set COURIER_NATS_SERVER or put nats-server on the PATH to run this test")
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := listener.Addr().(*net.TCPAddr).Port
	listener.Close()
	// `-js -sd DIR` with the store's limits set: by default JetStream allows 75% of
	// the disk's free space, which on a busy build machine can be less than courier's
	// streams ask for.
	dir := t.TempDir()
	config := filepath.Join(dir, "nats.conf")
	limits := fmt.Sprintf("jetstream {\n  store_dir: %q\n  max_file_store: 4GB\n  max_memory_store: 256MB\n}\n", filepath.Join(dir, "store"))
	if err := os.WriteFile(config, []byte(limits), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", config, "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port))
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	ready := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		announced := false
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			if !announced && strings.Contains(lines.Text(), "Server is ready") {
				close(ready)
				announced = true
			} else if os.Getenv("COURIER_TEST_LOGS") != "" {
				fmt.Fprintf(os.Stderr, "nats: %s\n", lines.Text())
			}
		}
		io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-drained
		cmd.Wait()
	})
	select {
	case <-ready:
	case <-drained:
		t.Fatal("nats-server exited before it was ready (COURIER_TEST_LOGS=1 shows its log)")
	case <-time.After(30 * time.Second):
		t.Fatal("nats-server was not ready within 30 s")
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}
