// Command testagent is a worker process with the misbehaviours the
// integration tests need: process trees that escape their group, crashes,
// memory use, output with and without heartbeats.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testagent tree|escapee|daemon FILE|flaky N FILE|hog MIB|print|silent|exit-on FILE CODE")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "tree":
		// A child in our group, and a grandchild that moves to a new
		// session and ignores SIGTERM.
		signal.Ignore(syscall.SIGTERM)
		child := exec.Command(os.Args[0], "escapee")
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		must(child.Start())
		fmt.Println("tree: started child", child.Process.Pid)
		time.Sleep(time.Hour)
	case "escapee":
		grandchild := exec.Command(os.Args[0], "stubborn")
		grandchild.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		grandchild.Stdout, grandchild.Stderr = os.Stdout, os.Stderr
		must(grandchild.Start())
		fmt.Println("escapee: started grandchild in a new session", grandchild.Process.Pid)
		time.Sleep(time.Hour)
	case "daemon":
		// Daemonizes as sudo, docker run or a dev server does: a child
		// that clears its environment, starts a new session and is
		// orphaned to init when its parent exits at once. Only a cgroup
		// still ties it to the worker. It writes its PID to FILE.
		cmd := exec.Command("sh", "-c", `(env -i setsid "$0" stubborn-pidfile "$1" &)`, os.Args[0], os.Args[2])
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		must(cmd.Run())
		fmt.Println("daemon: started a daemon that left environment, group and session")
		time.Sleep(time.Hour)
	case "stubborn-pidfile":
		must(os.WriteFile(os.Args[2], []byte(strconv.Itoa(os.Getpid())), 0o644))
		signal.Ignore(syscall.SIGTERM, syscall.SIGHUP)
		time.Sleep(time.Hour)
	case "stubborn":
		signal.Ignore(syscall.SIGTERM, syscall.SIGHUP)
		time.Sleep(time.Hour)
	case "flaky":
		// Crashes while its run counter (in FILE) is at most N, then works
		// for a moment and succeeds.
		n, _ := strconv.Atoi(os.Args[2])
		data, _ := os.ReadFile(os.Args[3])
		runs, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		runs++
		must(os.WriteFile(os.Args[3], []byte(strconv.Itoa(runs)), 0o644))
		time.Sleep(500 * time.Millisecond)
		if runs <= n {
			fmt.Println("flaky: crash", runs)
			os.Exit(3)
		}
		fmt.Println("flaky: success on run", runs)
	case "hog":
		mib, _ := strconv.Atoi(os.Args[2])
		buf := make([]byte, mib<<20)
		for i := 0; i < len(buf); i += 4096 {
			buf[i] = 1
		}
		fmt.Println("hog: holding", mib, "MiB")
		time.Sleep(time.Hour)
		fmt.Println(buf[len(buf)-1])
	case "print":
		for i := 0; ; i++ {
			fmt.Println("working", i)
			time.Sleep(200 * time.Millisecond)
		}
	case "exit-on":
		// Runs until FILE exists, then exits with CODE: a test ends it
		// while the worker program is down.
		code, _ := strconv.Atoi(os.Args[3])
		for {
			if _, err := os.Stat(os.Args[2]); err == nil {
				fmt.Println("exit-on: exiting with", code)
				os.Exit(code)
			}
			time.Sleep(50 * time.Millisecond)
		}
	case "silent":
		time.Sleep(time.Hour)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
