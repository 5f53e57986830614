package proc

import "syscall"

// sysProcAttr puts the child in its own process group, so a stop reaches the children it starts
// too, and kills it if the process that started it dies first, so a crashed test or demo leaves
// nothing behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
