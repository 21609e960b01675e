package eventbus_test

import (
	"bytes"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// lockedBuffer collects a child process's output while tests read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// mustStartMoto runs a moto server on a free local port until the test
// ends and returns its endpoint URL. The test fails if it cannot start.
func mustStartMoto(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find a free port for moto: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		tb.Fatalf("release port %d: %v", port, err)
	}

	var out lockedBuffer
	cmd := exec.Command("python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start moto server: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	endpoint := "http://127.0.0.1:" + strconv.Itoa(port)
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			tb.Fatalf("moto server exited before answering (%v); output:\n%s", waitErr, out.String())
		default:
		}
		resp, err := client.Get(endpoint + "/moto-api/")
		if err == nil {
			_ = resp.Body.Close()
			return endpoint
		}
		if time.Now().After(deadline) {
			tb.Fatalf("moto server at %s did not answer within 30s (last error %v); output:\n%s", endpoint, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
