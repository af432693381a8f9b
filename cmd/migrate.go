package cmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pvpipe/pvauth/driver/config"
	sqlp "github.com/pvpipe/pvauth/persistence/sql"
)

func newMigrateCmd() *cobra.Command {
	c := &cobra.Command{Use: "migrate", Short: "Database migrations"}
	c.AddCommand(newMigrateSQLCmd(), newMigrateStatusCmd())
	return c
}

// migrationDSN picks the DSN from the argument or, with -e, from config and environment.
func migrationDSN(args []string, fromEnv bool, file string) (string, error) {
	switch {
	case len(args) == 1 && fromEnv:
		return "", errors.New("give either a DSN argument or -e, not both")
	case len(args) == 1:
		return args[0], nil
	case fromEnv:
		cfg, err := config.Load(config.Options{File: file, NoSecrets: true})
		if err != nil {
			return "", err
		}
		if p := cfg.SQLitePath(); p != "" {
			q := ""
			if i := strings.IndexByte(cfg.DSN, '?'); i >= 0 {
				q = cfg.DSN[i:]
			}
			return "sqlite://" + p + q, nil
		}
		return cfg.DSN, nil
	default:
		return "", errors.New("give the database DSN as an argument, or -e to read it from the config file and environment (DSN)")
	}
}

func newMigrateSQLCmd() *cobra.Command {
	var fromEnv, yes bool
	var file string
	c := &cobra.Command{
		Use:   "sql [DSN]",
		Short: "Apply all pending SQL migrations",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dsn, err := migrationDSN(args, fromEnv, file)
			if err != nil {
				return err
			}
			if dsn == "memory" {
				return errors.New("dsn 'memory' is migrated by serve itself; nothing to do")
			}
			ctx := context.Background()
			p, err := sqlp.New(ctx, dsn)
			if err != nil {
				return err
			}
			defer p.Close()
			n, err := p.PendingMigrations(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if n == 0 {
				fmt.Fprintln(out, "The database is up to date.")
				return nil
			}
			if !yes {
				fmt.Fprintf(out, "Apply %d migrations? [y/N] ", n)
				line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
					return errors.New("aborted")
				}
			}
			if err := p.MigrateUp(ctx); err != nil {
				return err
			}
			fmt.Fprintf(out, "Applied %d migrations.\n", n)
			return nil
		},
	}
	c.Flags().BoolVarP(&fromEnv, "read-from-env", "e", false, "read the DSN from the config file and environment")
	c.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	c.Flags().StringVarP(&file, "config", "c", "", "config file used with -e")
	return c
}

func newMigrateStatusCmd() *cobra.Command {
	var fromEnv bool
	var file string
	c := &cobra.Command{
		Use:   "status [DSN]",
		Short: "Show applied and pending migrations",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !fromEnv {
				fromEnv = true
			}
			dsn, err := migrationDSN(args, fromEnv, file)
			if err != nil {
				return err
			}
			ctx := context.Background()
			p, err := sqlp.New(ctx, dsn)
			if err != nil {
				return err
			}
			defer p.Close()
			return p.MigrationStatus(ctx, cmd.OutOrStdout())
		},
	}
	c.Flags().BoolVarP(&fromEnv, "read-from-env", "e", false, "read the DSN from the config file and environment")
	c.Flags().StringVarP(&file, "config", "c", "", "config file used with -e")
	return c
}
