package devstack

import "syscall"

// sysProcAttr puts the process in a group of its own (a session of its own
// when detached); an attached process is killed when the caller dies.
func sysProcAttr(detach bool) *syscall.SysProcAttr {
	if detach {
		return &syscall.SysProcAttr{Setsid: true}
	}
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
