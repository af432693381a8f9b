package cmd

import "github.com/spf13/cobra"

func newIdentitiesCmd() *cobra.Command {
	return &cobra.Command{Use: "identities", Short: "Manage identities through the admin API"}
}
