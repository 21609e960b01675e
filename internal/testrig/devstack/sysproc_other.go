//go:build unix && !linux

package devstack

import "syscall"

// sysProcAttr puts the process in a group of its own (a session of its own
// when detached). Without Linux's parent-death signal, an attached process
// outlives a caller that dies without stopping it.
func sysProcAttr(detach bool) *syscall.SysProcAttr {
	if detach {
		return &syscall.SysProcAttr{Setsid: true}
	}
	return &syscall.SysProcAttr{Setpgid: true}
}
