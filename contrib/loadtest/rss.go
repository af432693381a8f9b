package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procStatusKiB reads one "Name:   1234 kB" line of /proc/PID/status (Linux).
func procStatusKiB(pid int, name string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			break
		}
		return strconv.ParseInt(fields[0], 10, 64)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, name)
}

// memSample is the server's resident memory at one point.
type memSample struct {
	When     string
	RSS, HWM int64 // KiB; HWM is the peak RSS so far
	Err      error
}

func sampleMem(pid int, when string) memSample {
	s := memSample{When: when}
	if s.RSS, s.Err = procStatusKiB(pid, "VmRSS"); s.Err == nil {
		s.HWM, s.Err = procStatusKiB(pid, "VmHWM")
	}
	return s
}

func fmtKiB(k int64) string { return fmt.Sprintf("%.1f MiB", float64(k)/1024) }
