// Command loadtest drives a running pvauth over loopback and reports throughput and
// latency percentiles per scenario (introspect, refresh, biometric, confirmation,
// confirmation_events, streams, client_credentials, oauth2_introspect, login). See README.md.
//
//	go run ./contrib/loadtest -public http://127.0.0.1:8080 -admin http://127.0.0.1:8081 \
//	    -c 16 -d 10s -scenario all [-admin-key K] [-pid PID]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// options are the command's flags.
type options struct {
	Public, Admin, AdminKey string
	Concurrency             int
	Duration                time.Duration
	Scenarios               []string
	// PID of the server, for its resident memory (0: not reported).
	PID int
	// LoginUsers is the identity pool of the login scenario (0: sized automatically).
	LoginUsers int
	// Streams is how many event streams the streams scenario holds open at once.
	Streams int
}

func main() {
	var o options
	var scenario string
	flag.StringVar(&o.Public, "public", "http://127.0.0.1:8080", "base URL of the public port")
	flag.StringVar(&o.Admin, "admin", "http://127.0.0.1:8081", "base URL of the admin port")
	flag.StringVar(&o.AdminKey, "admin-key", os.Getenv("PVAUTH_ADMIN_API_KEY"), "admin API key (default: env PVAUTH_ADMIN_API_KEY)")
	flag.IntVar(&o.Concurrency, "c", 16, "concurrent workers (each keeps its own connection)")
	flag.DurationVar(&o.Duration, "d", 10*time.Second, "measured duration of each scenario")
	flag.StringVar(&scenario, "scenario", "all", strings.Join(scenarioNames, ", ")+", a comma-separated list, or all")
	flag.IntVar(&o.PID, "pid", 0, "server process id: report its resident memory (Linux /proc)")
	flag.IntVar(&o.LoginUsers, "login-users", 0, "identities enrolled for the login scenario, 10 recovery codes each (0: enough for -d at this machine's hash rate)")
	flag.IntVar(&o.Streams, "streams", 1000, "event streams the streams scenario holds open at once")
	flag.Parse()
	if flag.NArg() > 0 {
		fail(fmt.Errorf("unexpected arguments: %v", flag.Args()))
	}
	var err error
	if o.Scenarios, err = parseScenarios(scenario); err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, o, os.Stdout); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "loadtest:", err)
	os.Exit(1)
}

func parseScenarios(s string) ([]string, error) {
	if s == "all" {
		return scenarioNames, nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		known := false
		for _, n := range scenarioNames {
			known = known || p == n
		}
		if !known {
			return nil, fmt.Errorf("unknown scenario %q (want %s or all)", p, strings.Join(scenarioNames, ", "))
		}
		out = append(out, p)
	}
	return out, nil
}

// run sets up and measures each scenario in turn and prints the report to out.
func run(ctx context.Context, o options, out io.Writer) ([]*result, error) {
	if o.Concurrency < 1 {
		return nil, errors.New("-c must be at least 1")
	}
	if o.Duration <= 0 {
		return nil, errors.New("-d must be positive")
	}
	a := newAPI(o.Public, o.Admin, o.AdminKey, o.Concurrency)
	defer a.close()
	r := &runner{api: a, opt: o, logf: func(format string, args ...any) {
		fmt.Fprintf(out, "# "+format+"\n", args...)
	}}
	r.logf("pvauth load test: public %s, admin %s, %d workers, %s per scenario", a.public, a.admin, o.Concurrency, o.Duration)
	r.logf("client machine: %d CPUs (%s), GOMAXPROCS %d, %s", runtime.NumCPU(), cpuModel(), runtime.GOMAXPROCS(0), runtime.Version())
	if err := r.checkServer(ctx); err != nil {
		return nil, err
	}

	var mem []memSample
	if o.PID > 0 {
		mem = append(mem, sampleMem(o.PID, "before"))
	}
	var results []*result
	for _, name := range o.Scenarios {
		res, err := r.scenario(ctx, name)
		if err != nil {
			return results, err
		}
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
		results = append(results, res)
		r.logf("%s: %d requests, %d errors, %.1f/s", name, res.Requests, res.ErrorCount(), res.Rate())
		if o.PID > 0 {
			mem = append(mem, sampleMem(o.PID, "after "+name))
		}
	}
	printReport(out, o, results, mem)
	return results, nil
}

func printReport(out io.Writer, o options, results []*result, mem []memSample) {
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trequests\terrors\treq/s\tp50\tp90\tp99\tmax\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t\n", r.Name, r.Requests, r.ErrorCount(), r.Rate(),
			fmtDur(r.Percentile(50)), fmtDur(r.Percentile(90)), fmtDur(r.Percentile(99)), fmtDur(r.Max()))
	}
	tw.Flush()
	fmt.Fprintln(out)
	for _, r := range results {
		fmt.Fprintf(out, "%s errors by status: %s (wall time %s)\n", r.Name, r.ErrorSummary(), r.Elapsed.Round(time.Millisecond))
	}
	for _, r := range results {
		for _, n := range r.Notes {
			fmt.Fprintln(out, n)
		}
	}
	if len(mem) > 0 {
		parts := make([]string, 0, len(mem))
		for _, m := range mem {
			if m.Err != nil {
				parts = append(parts, fmt.Sprintf("%s: %v", m.When, m.Err))
				continue
			}
			parts = append(parts, fmt.Sprintf("%s %s", m.When, fmtKiB(m.RSS)))
		}
		last := mem[len(mem)-1]
		fmt.Fprintf(out, "server RSS (pid %d): %s; peak (VmHWM) %s\n", o.PID, strings.Join(parts, ", "), fmtKiB(last.HWM))
	}
}

// cpuModel is the "model name" of /proc/cpuinfo, or "unknown CPU".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
