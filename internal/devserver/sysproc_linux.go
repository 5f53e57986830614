package devserver

import "syscall"

// sysProcAttr kills the server if the process that started it dies first, so a crashed test or
// demo leaves no server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
