// Package cmd holds pvauth's cobra commands.
package cmd

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X github.com/pvpipe/pvauth/cmd.Version=...".
var Version = "dev"

// NewRootCmd builds the command tree.
func NewRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "pvauth",
		Short:         "pvauth is a headless identity server: self-service login, device keys, passkeys, OAuth2/OIDC",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newMigrateCmd(), newIdentitiesCmd(), newClientsCmd(), newVersionCmd())
	return root
}

// Execute runs the CLI and exits non-zero on error.
func Execute() {
	if err := NewRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
