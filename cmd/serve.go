package cmd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pvpipe/pvauth/driver"
	"github.com/pvpipe/pvauth/driver/config"
)

// DefaultMemoryLimit is the Go runtime's soft memory limit for `serve`.
const DefaultMemoryLimit = 80 << 20

func newServeCmd() *cobra.Command {
	var file string
	var dev bool
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the public (default :8080) and admin (default 127.0.0.1:8081) servers",
		Long: `Run pvauth. --dev is for a first try on a laptop: it generates throw-away secrets when
none are configured (kept beside the SQLite file so restarts still work), migrates the
database on start, and allows plain http. Without --dev a missing secret or an unmigrated
database stops the start with a clear error.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(config.Options{File: file, Dev: dev})
			if err != nil {
				return err
			}
			if err := cfg.CheckAdminExposure(); err != nil {
				return err
			}
			// Each argon2 hash allocates its memory cost (19 MiB by default) and the garbage
			// collector would otherwise let several generations pile up under login load; a
			// soft limit keeps the resident size flat. GOMEMLIMIT overrides it.
			if os.Getenv("GOMEMLIMIT") == "" {
				debug.SetMemoryLimit(DefaultMemoryLimit)
				// With the limit as the ceiling, collecting at 4x the live heap instead of
				// 2x spends less CPU on a heap this small. GOGC overrides it.
				if os.Getenv("GOGC") == "" {
					debug.SetGCPercent(400)
				}
			}
			logger := driver.NewLogger(cfg)
			slog.SetDefault(logger)
			if dev {
				logger.Warn("running in --dev mode: do not use in production")
			} else if len(cfg.Issuer()) > 7 && cfg.Issuer()[:7] == "http://" {
				logger.Warn("the issuer URL uses plain http; put pvauth behind TLS in production", "issuer", cfg.Issuer())
			}
			stopProfile, err := startProfiling(os.Getenv("PROFILING"), logger)
			if err != nil {
				return err
			}
			defer stopProfile()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			reg, err := driver.New(ctx, cfg, driver.Options{Migrate: dev, Logger: logger})
			if err != nil {
				return err
			}
			defer reg.Close()
			return reg.ListenAndServe(ctx)
		},
	}
	c.Flags().StringVarP(&file, "config", "c", "", "config file (YAML); defaults are the annotated config.yaml")
	c.Flags().BoolVar(&dev, "dev", false, "development mode: throw-away secrets, migrate on start, plain http")
	return c
}

// startProfiling honours PROFILING=cpu|mem (as Ory's servers do): the profile is written to
// cpu.pprof or mem.pprof in the working directory when serve stops, for `go tool pprof`.
func startProfiling(mode string, logger *slog.Logger) (func(), error) {
	switch mode {
	case "":
		return func() {}, nil
	case "cpu":
		f, err := os.Create("cpu.pprof")
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		logger.Warn("PROFILING=cpu: writing cpu.pprof on shutdown")
		return func() { pprof.StopCPUProfile(); f.Close() }, nil
	case "mem":
		logger.Warn("PROFILING=mem: writing mem.pprof on shutdown")
		return func() {
			f, err := os.Create("mem.pprof")
			if err != nil {
				logger.Error("PROFILING=mem", "error", err)
				return
			}
			defer f.Close()
			runtime.GC()
			_ = pprof.WriteHeapProfile(f)
		}, nil
	default:
		return nil, fmt.Errorf("PROFILING=%q: want cpu or mem", mode)
	}
}
