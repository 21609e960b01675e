package faultproxy_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// motoServer is one moto server shared by the tests of this package, started
// on first use and stopped by TestMain.
var motoServer struct {
	once   sync.Once
	proc   *os.Process
	exited <-chan error // receives the result of the process's Wait
	url    string
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if motoServer.proc != nil {
		_ = syscall.Kill(-motoServer.proc.Pid, syscall.SIGKILL) // the whole process group
		<-motoServer.exited
	}
	os.Exit(code)
}

// mustMoto returns the base URL of the shared moto server, starting it if
// needed, and fails the test if it cannot run.
func mustMoto(tb testing.TB) string {
	tb.Helper()
	motoServer.once.Do(func() {
		motoServer.url, motoServer.proc, motoServer.exited, motoServer.err = startMoto(20 * time.Second)
	})
	if motoServer.err != nil {
		tb.Fatalf("moto server is required and could not start: %v", motoServer.err)
	}
	return motoServer.url
}

// startMoto runs `python3 -m moto.server` on a free loopback port and waits
// until it answers HTTP. It returns the server's URL, its process and a
// channel that receives the process's exit.
func startMoto(timeout time.Duration) (string, *os.Process, <-chan error, error) {
	port, err := freePort()
	if err != nil {
		return "", nil, nil, err
	}
	var output bytes.Buffer
	cmd := exec.Command("python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	cmd.Stdout = &output
	cmd.Stderr = &output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", nil, nil, fmt.Errorf("run python3 -m moto.server: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return "", nil, nil, fmt.Errorf("moto server exited early (%v); output:\n%s", err, output.String())
		default:
		}
		resp, err := client.Get(url + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return url, cmd.Process, exited, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
	return "", nil, nil, fmt.Errorf("moto server did not answer on %s within %v; output:\n%s", url, timeout, output.String())
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("find a free port: not a TCP address")
	}
	return addr.Port, nil
}
