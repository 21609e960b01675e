package devstack

import (
	"context"
	_ "embed"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// MotoOptions tune StartMoto.
type MotoOptions struct {
	// Python is the interpreter with moto installed. Default "python3".
	Python string
	// Host and Port to listen on. Defaults 127.0.0.1 and a free port.
	Host string
	Port int
	// LogPath receives the server's output; empty keeps it in memory.
	LogPath string
	// Detach lets the server outlive the caller (see ProcessOptions).
	Detach bool
	// StartTimeout bounds the wait for the server to answer. Default 30s.
	StartTimeout time.Duration
	// VerifyEncoding serves every DynamoDB read through moto's own encoder
	// too and fails the request if the launcher's faster one differs (for
	// tests of the launcher).
	VerifyEncoding bool
}

// Moto is a running moto server.
type Moto struct {
	// Endpoint is the server's URL, e.g. http://127.0.0.1:41234.
	Endpoint string
	Process  *Process
}

// motoLauncher runs moto's server with the fixes described in
// moto_server.py: DynamoDB requests served one at a time, transactions that
// neither deep-copy whole tables nor undo concurrent writes when cancelled,
// partition-local queries, fast read encoding, memoised EventBridge input
// paths.
//
//go:embed moto_server.py
var motoLauncher string

// StartMoto starts moto's server (see motoLauncher) and waits until it answers HTTP.
// The error says plainly when python3 or moto is missing.
func StartMoto(opts MotoOptions) (*Moto, error) {
	if opts.Python == "" {
		opts.Python = "python3"
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	python, err := exec.LookPath(opts.Python)
	if err != nil {
		return nil, fmt.Errorf("moto needs %s, which is not on PATH (install Python 3 and `pip install 'moto[server]'`): %w", opts.Python, err)
	}
	attempts := 1
	if opts.Port == 0 {
		attempts = 3 // a free port can be taken between probe and bind
	}
	var lastErr error
	for i := 0; i < attempts; i++ {
		port := opts.Port
		if port == 0 {
			if port, err = FreePort(); err != nil {
				return nil, err
			}
		}
		m, err := startMotoOn(python, port, opts)
		if err == nil {
			return m, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "in use") {
			break
		}
	}
	return nil, lastErr
}

func startMotoOn(python string, port int, opts MotoOptions) (*Moto, error) {
	addr := net.JoinHostPort(opts.Host, strconv.Itoa(port))
	p, err := StartProcess(ProcessOptions{
		Name:    "moto server",
		Path:    python,
		Args:    []string{"-c", motoLauncher, "-H", opts.Host, "-p", strconv.Itoa(port)},
		Env:     motoEnv(opts.VerifyEncoding),
		LogPath: opts.LogPath,
		Detach:  opts.Detach,
	})
	if err != nil {
		return nil, err
	}
	m := &Moto{Endpoint: "http://" + addr, Process: p}
	ctx, cancel := context.WithTimeout(context.Background(), opts.StartTimeout)
	defer cancel()
	for !Answers(ctx, m.Endpoint) {
		select {
		case <-p.Done():
			err := p.exitedError()
			if strings.Contains(p.Output(), "No module named") {
				err = fmt.Errorf("moto is not installed for %s (`pip install 'moto[server]'`): %w", python, err)
			}
			return nil, err
		case <-ctx.Done():
			_ = p.Stop(time.Second)
			return nil, fmt.Errorf("moto server did not answer on %s within %s; its output ends with:\n%s", m.Endpoint, opts.StartTimeout, lastLines(p.Output(), 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return m, nil
}

func motoEnv(verify bool) []string {
	flag := "MOTO_FAST_VERIFY=0"
	if verify {
		flag = "MOTO_FAST_VERIFY=1"
	}
	return append(os.Environ(), flag)
}

// Stop stops the server.
func (m *Moto) Stop() error {
	return m.Process.Stop(5 * time.Second)
}

// Answers reports whether an HTTP server answers at endpoint.
func Answers(ctx context.Context, endpoint string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(endpoint, "/")+"/moto-api/", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// ResetMoto drops every resource of the moto server at endpoint.
func ResetMoto(ctx context.Context, endpoint string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(endpoint, "/")+"/moto-api/reset", nil)
	if err != nil {
		return fmt.Errorf("reset moto: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reset moto: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reset moto: %s", resp.Status)
	}
	return nil
}

// AWSConfig returns an SDK configuration for a local endpoint: the region,
// the static credentials test/test and BaseEndpoint. It reads no
// environment variables or shared files, so it cannot reach a real account.
func AWSConfig(endpoint, region string) aws.Config {
	if region == "" {
		region = DefaultRegion
	}
	return aws.Config{
		Region:       region,
		Credentials:  aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, "")),
		BaseEndpoint: aws.String(endpoint),
	}
}
