// Command ociprobe is the node package's test program for containers under
// the OCI runtime: mounted into a container from a volume, it prints what
// the container gives it, one "key=value" a line, and exits with status 3
// (the test checks that status comes back). "ociprobe wait" instead waits
// for SIGTERM, says so, and exits 0.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "wait" {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("waiting")
		fmt.Println("signal=" + (<-c).String())
		return
	}
	fmt.Printf("args=%q\n", os.Args)
	for _, kv := range os.Environ() {
		fmt.Println("env." + kv)
	}
	fmt.Printf("uid=%d gid=%d pid=%d\n", os.Getuid(), os.Getgid(), os.Getpid())
	if wd, err := os.Getwd(); err == nil {
		fmt.Println("cwd=" + wd)
	}
	if ns, err := os.Readlink("/proc/self/ns/net"); err == nil {
		fmt.Println("netns=" + ns)
	}
	if h, err := os.Hostname(); err == nil {
		fmt.Println("hostname=" + h)
	}
	if f, err := os.Open("/proc/self/status"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.HasPrefix(k, "Cap") {
				fmt.Printf("%s=%s\n", k, strings.TrimSpace(v))
			}
		}
		f.Close()
	}
	for _, p := range os.Args[1:] {
		data, err := os.ReadFile(p)
		fmt.Printf("file.%s=%q err=%v\n", p, strings.TrimSpace(string(data)), err)
	}
	err := os.WriteFile("/probe-write", []byte("x"), 0o644)
	fmt.Printf("rootwrite=%v\n", err)
	if _, err := os.Stat("/strait-gateway"); err == nil {
		fmt.Println("image=strait-gateway")
	}
	os.Exit(3)
}
