// Package testkit starts real courier-server processes for the Go client's tests, the
// way tests/scenarios.md's Harness section asks: `courier-server serve` on
// 127.0.0.1:0 with a fresh data folder and a known JWT secret, its addresses read from
// its "courier-server listening" log line, tokens signed with that secret, and its
// metrics and media store read from outside.
package testkit

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Secret is the JWT secret of every test server, so that tests can mint and forge
// tokens.
const Secret = "test-secret-of-courier-go"

// Server is a running courier-server process.
type Server struct {
	// Addr and MetricsAddr are the gRPC and metrics addresses, host:port.
	Addr, MetricsAddr string
	// DataDir is the server's data folder; its media store is DataDir/media.
	DataDir string
	// flags are the extra flags it was started with, kept for Restart.
	flags []string
	// cmd is the process.
	cmd *exec.Cmd
	// drained is closed when the process's output has been read to its end.
	drained chan struct{}
}

// Binary is the courier-server binary: $COURIER_SERVER_BIN, or the repository's
// target/debug/courier-server.
func Binary() (string, error) {
	if bin := os.Getenv("COURIER_SERVER_BIN"); bin != "" {
		return bin, nil
	}
	_, here, _, _ := runtime.Caller(0)
	bin := filepath.Join(filepath.Dir(here), "..", "..", "..", "..", "target", "debug", "courier-server")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("no courier-server: set COURIER_SERVER_BIN or build it with `cargo build -p courier-server` (%w)", err)
	}
	return bin, nil
}

// Start starts a server with extra flags and stops it when the test ends.
func Start(t testing.TB, flags ...string) *Server {
	t.Helper()
	s, err := StartProcess(flags...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartAt starts a server listening on listen (host:port) and stops it when the test
// ends.
func StartAt(t testing.TB, listen string, flags ...string) *Server {
	t.Helper()
	s, err := startProcess(listen, flags)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartProcess starts a server with extra flags; Stop it when done.
func StartProcess(flags ...string) (*Server, error) { return startProcess("127.0.0.1:0", flags) }

func startProcess(listen string, flags []string) (*Server, error) {
	dir, err := os.MkdirTemp("", "courier-go-test-")
	if err != nil {
		return nil, err
	}
	s := &Server{DataDir: dir, flags: flags}
	if err := s.launch(listen); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// launch starts the process listening on listen and waits (at most 30 s) for its
// listening line; its output is drained for as long as it runs.
func (s *Server) launch(listen string) error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	args := append([]string{"serve", "--listen", listen, "--metrics-listen", "127.0.0.1:0",
		"--data-dir", s.DataDir}, s.flags...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "COURIER_JWT_SECRET="+Secret, "RUST_LOG=info")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	found := make(chan map[string]any, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		report := found
		lines := bufio.NewScanner(out)
		lines.Buffer(make([]byte, 64*1024), 1024*1024)
		for lines.Scan() {
			line := lines.Bytes()
			var log map[string]any
			if report != nil && json.Unmarshal(line, &log) == nil && log["message"] == "courier-server listening" {
				report <- log
				report = nil
			} else if os.Getenv("COURIER_TEST_LOGS") != "" {
				fmt.Fprintf(os.Stderr, "server: %s\n", line)
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case log := <-found:
		addr, _ := log["addr"].(string)
		metrics, _ := log["metrics_addr"].(string)
		if addr == "" || metrics == "" {
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("the listening line lacks addr or metrics_addr: %v", log)
		}
		s.Addr, s.MetricsAddr, s.cmd, s.drained = addr, metrics, cmd, drained
		return nil
	case <-drained:
		cmd.Wait()
		return errors.New("courier-server exited before it listened (COURIER_TEST_LOGS=1 shows its log)")
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		return errors.New("courier-server did not report its address within 30 s")
	}
}

// kill ends the process (SIGKILL, as in a crash) and waits for it.
func (s *Server) kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.drained
	s.cmd.Wait()
	s.cmd = nil
}

// Kill ends the server as a crash would (SIGKILL), keeping its data folder.
func (s *Server) Kill() { s.kill() }

// Stop kills the server and removes its data folder.
func (s *Server) Stop() {
	s.kill()
	os.RemoveAll(s.DataDir)
}

// Restart kills the server and starts a new one on the same address and data folder.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.kill()
	var err error
	// The port may linger for a moment: try a few times, for at most 5 s.
	for try := 0; try < 50; try++ {
		if err = s.launch(s.Addr); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("restart: %v", err)
}

// URL is the server's URL.
func (s *Server) URL() string { return "http://" + s.Addr }

// Token is a token for user, valid for an hour.
func Token(user string) string { return TokenWith(Secret, user, time.Hour) }

// TokenWith is a token for user signed with secret, expiring after ttl (negative:
// already expired).
func TokenWith(secret, user string, ttl time.Duration) string {
	enc := base64.RawURLEncoding
	now := time.Now().Unix()
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{"sub": user, "iat": now, "exp": now + int64(ttl/time.Second)})
	signed := header + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil))
}

// Metric reads one value from the metrics endpoint.
func (s *Server) Metric(t testing.TB, name string) int64 {
	t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	response, err := client.Get("http://" + s.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if value, ok := strings.CutPrefix(line, name+" "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				t.Fatalf("metric %s: %q: %v", name, value, err)
			}
			return int64(n)
		}
	}
	t.Fatalf("metric %s is missing from:\n%s", name, body)
	return 0
}

// MetricSum is the sum of every series of the metric name whose labels contain
// labels (such as `method="GetMedia"`; "" for every series), 0 when there is none.
func (s *Server) MetricSum(t testing.TB, name, labels string) int64 {
	t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	response, err := client.Get("http://" + s.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		series, value, ok := strings.Cut(line, " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) || !strings.Contains(series, labels) {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			t.Fatalf("metric %s: %q: %v", series, value, err)
		}
		sum += n
	}
	return int64(sum)
}

// WaitInFlight waits (at most 10 s) until courier_transfers_in_flight is n.
func (s *Server) WaitInFlight(t testing.TB, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		now := s.Metric(t, "courier_transfers_in_flight")
		if now == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("transfers in flight stayed %d, expected %d", now, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stored lists every file under the media store (objects, metadata and staging
// files of unfinished uploads), relative to it, sorted.
func (s *Server) Stored(t testing.TB) []string {
	t.Helper()
	root := filepath.Join(s.DataDir, "media")
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, path)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing the store: %v", err)
	}
	slices.Sort(files)
	return files
}

// WaitStoredEmpty waits (at most 10 s) until the media store holds no file.
func (s *Server) WaitStoredEmpty(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		files := s.Stored(t)
		if len(files) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store still holds %v", files)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Pattern is n deterministic pseudo-random bytes (xorshift, as the Rust testkit's).
func Pattern(n int, seed byte) []byte {
	x := uint32(0x9e3779b9) ^ uint32(seed)
	out := make([]byte, n)
	for i := range out {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		out[i] = byte(x)
	}
	return out
}

// PNG is a width x height PNG image.
func PNG(width, height int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	for y := 0; y < height; y++ {
		for x := 0; x < width; x++ {
			img.Set(x, y, color.RGBA{R: uint8(x), G: uint8(y), B: 128, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err)
	}
	return buf.Bytes()
}
