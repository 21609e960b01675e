package devstack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProcessOptions describe a background process.
type ProcessOptions struct {
	// Name is used in messages ("moto", "emulator").
	Name string
	Path string
	Args []string
	// Env is the complete environment of the process; nil inherits the
	// caller's.
	Env []string
	Dir string
	// LogPath, when set, receives the process's output (appended). Otherwise
	// the last 64 KiB of output are kept in memory (Process.Output).
	LogPath string
	// Detach starts the process in a session of its own so that it outlives
	// the caller. Otherwise it is killed when the caller dies (on Linux).
	Detach bool
}

// Process is a background process started by StartProcess, in a process
// group of its own.
type Process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	out     *tailBuffer
	done    chan struct{}
	waitErr error
}

// StartProcess starts a background process.
func StartProcess(opts ProcessOptions) (*Process, error) {
	cmd := exec.Command(opts.Path, opts.Args...)
	cmd.Env = opts.Env
	cmd.Dir = opts.Dir
	cmd.SysProcAttr = sysProcAttr(opts.Detach)
	p := &Process{name: opts.Name, logPath: opts.LogPath, cmd: cmd, done: make(chan struct{})}
	if opts.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(opts.LogPath), 0o755); err != nil {
			return nil, fmt.Errorf("start %s: %w", opts.Name, err)
		}
		f, err := os.OpenFile(opts.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", opts.Name, err)
		}
		defer f.Close() // the child keeps its own descriptor
		cmd.Stdout, cmd.Stderr = f, f
	} else {
		p.out = &tailBuffer{max: 64 << 10}
		cmd.Stdout, cmd.Stderr = p.out, p.out
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", opts.Name, opts.Path, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID returns the process ID (also its process group ID).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr returns how the process ended; valid once Done is closed.
func (p *Process) ExitErr() error { return p.waitErr }

// Output returns the captured output: the tail kept in memory, or the end of
// the log file.
func (p *Process) Output() string {
	if p.out != nil {
		return p.out.String()
	}
	return fileTail(p.logPath, 64<<10)
}

// exitedError describes a process that ended when it should be running.
func (p *Process) exitedError() error {
	return fmt.Errorf("%s exited (%v); its output ends with:\n%s", p.name, p.waitErr, lastLines(p.Output(), 20))
}

// Stop stops the process and its children: SIGTERM to its process group,
// then SIGKILL after grace. Processes the emulator started in groups of
// their own (the function runtime) are stopped too.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	children := childPIDs(p.PID())
	_ = syscall.Kill(-p.PID(), syscall.SIGTERM)
	for _, c := range children {
		_ = syscall.Kill(-c, syscall.SIGTERM)
		_ = syscall.Kill(c, syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("stop %s (pid %d): still running after SIGKILL", p.name, p.PID())
		}
	}
	for _, c := range children {
		_ = syscall.Kill(-c, syscall.SIGKILL)
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	return nil
}

// StopPID stops a detached process started by an earlier command: its
// process group and children get SIGTERM, then SIGKILL after grace. It only
// signals pid if its command line contains want, so a recycled PID is left
// alone; it reports whether the process was found.
func StopPID(pid int, want string, grace time.Duration) (bool, error) {
	if !ProcessRuns(pid, want) {
		return false, nil
	}
	children := childPIDs(pid)
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for _, c := range children {
		_ = syscall.Kill(-c, syscall.SIGTERM)
		_ = syscall.Kill(c, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for pidAlive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if pidAlive(pid) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, c := range children {
		_ = syscall.Kill(-c, syscall.SIGKILL)
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	for i := 0; pidAlive(pid) && i < 100; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if pidAlive(pid) {
		return true, fmt.Errorf("pid %d still running after SIGKILL", pid)
	}
	return true, nil
}

// ProcessRuns reports whether process pid runs and its command line
// contains want.
func ProcessRuns(pid int, want string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return pidAlive(pid) && want == ""
	}
	return strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), want)
}

// pidAlive reports whether pid exists and is not a zombie.
func pidAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no /proc: trust kill(0)
	}
	_, state, ok := statFields(string(b))
	return !ok || state != "Z"
}

// childPIDs returns the direct children of pid, read from /proc (empty
// where there is no /proc).
func childPIDs(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if ppid, state, ok := statFields(string(b)); ok && ppid == pid && state != "Z" {
			out = append(out, child)
		}
	}
	return out
}

// statFields extracts the parent PID and state from /proc/PID/stat.
func statFields(stat string) (ppid int, state string, ok bool) {
	i := strings.LastIndexByte(stat, ')') // the command may contain spaces
	if i < 0 {
		return 0, "", false
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, "", false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, f[0], err == nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits until addr accepts TCP connections, the process exits
// or timeout passes.
func waitListening(p *Process, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.Done():
			return p.exitedError()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not listen on %s within %s; its output ends with:\n%s", p.name, addr, timeout, lastLines(p.Output(), 20))
		}
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

func fileTail(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(-max, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

func lastLines(s string, n int) string {
	lines := bytes.Split(bytes.TrimRight([]byte(s), "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
