//go:build unix && !linux

package proc

import "syscall"

// sysProcAttr puts the child in its own process group, so a stop reaches the children it starts too.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
