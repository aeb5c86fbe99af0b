package nodenettest

import (
	"runtime"

	"github.com/vishvananda/netns"
)

// InNetns runs f on an OS thread switched into the named network namespace
// (one "ip netns add" made, /run/netns/<name>): sockets f opens live there,
// and commands it starts run there. Errors: the namespace cannot be opened
// or entered, or f's. A thread that cannot be switched back is never
// reused (it stays locked and Go retires it).
func InNetns(name string, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	ns, err := netns.GetFromName(name)
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		return err
	}
	defer func() {
		if netns.Set(orig) != nil {
			runtime.LockOSThread() // never reuse a thread left in ns
		}
	}()
	return f()
}
