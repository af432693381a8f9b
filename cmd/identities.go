package cmd

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

const adminIdentitiesPath = "/admin/identities"

// identityRow is what the list table shows of an Identity.
type identityRow struct {
	ID         int64  `json:"id"`
	Email      string `json:"email"`
	State      string `json:"state"`
	MFAEnabled bool   `json:"mfaEnabled"`
}

func newIdentitiesCmd() *cobra.Command {
	var af adminFlags
	c := &cobra.Command{
		Use:     "identities",
		Aliases: []string{"identity"},
		Short:   "Manage identities through the admin API of a running server",
		Long: `Manage identities through the admin API of a running pvauth (the admin port,
default ` + defaultAdminEndpoint + `). When the server sets serve.admin.api_keys, pass one
with --api-key or the environment variable ` + envAdminAPIKey + `.`,
	}
	af.register(c)
	c.AddCommand(
		newIdentitiesCreateCmd(&af),
		newIdentitiesListCmd(&af),
		newIdentitiesGetCmd(&af),
		newIdentitiesDeleteCmd(&af),
	)
	return c
}

func newIdentitiesCreateCmd(af *adminFlags) *cobra.Command {
	var (
		email, password, traits string
		passwordStdin, super    bool
		permissions             []string
	)
	c := &cobra.Command{
		Use:   "create --email EMAIL [--password PW | --password-stdin] [--traits JSON] [--permissions a,b] [--super-admin]",
		Short: "Create an identity and print it as JSON",
		Example: `  pvauth identities create --email ada@example.com --password-stdin < pw.txt
  pvauth identities create --email bob@example.com --traits '{"department":{"id":"ops","name":"Ops"}}' --permissions files.read,files.write`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(email) == "" {
				return errors.New("--email is required")
			}
			body := map[string]any{"email": email}
			switch {
			case passwordStdin && cmd.Flags().Changed("password"):
				return errors.New("give either --password or --password-stdin, not both")
			case passwordStdin:
				pw, err := readSecretLine(cmd.InOrStdin())
				if err != nil {
					return fmt.Errorf("reading the password from stdin: %w", err)
				}
				if pw == "" {
					return errors.New("--password-stdin: stdin holds no password")
				}
				body["password"] = pw
			case cmd.Flags().Changed("password"):
				body["password"] = password
			}
			if traits != "" {
				var obj map[string]any
				if err := json.Unmarshal([]byte(traits), &obj); err != nil || obj == nil {
					return errors.New("--traits must be a JSON object, e.g. '{\"department\":{\"id\":\"ops\",\"name\":\"Ops\"}}'")
				}
				body["traits"] = json.RawMessage(traits)
			}
			if cmd.Flags().Changed("permissions") {
				body["permissions"] = cleanList(permissions)
			}
			if super {
				body["isSuperAdmin"] = true
			}
			ac, err := af.client(cmd)
			if err != nil {
				return err
			}
			_, err = sendAndPrint(cmd, ac, http.MethodPost, adminIdentitiesPath, body)
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&email, "email", "", "email address (required)")
	f.StringVar(&password, "password", "", "password (visible in the process list and shell history: prefer --password-stdin)")
	f.BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of stdin")
	f.StringVar(&traits, "traits", "", `traits as a JSON object: {"department": {...}, "employee": {...}}`)
	f.StringSliceVar(&permissions, "permissions", nil, "comma-separated permissions")
	f.BoolVar(&super, "super-admin", false, "make the identity a super admin")
	return c
}

func newIdentitiesListCmd(af *adminFlags) *cobra.Command {
	var (
		lf    listFlags
		email string
	)
	c := &cobra.Command{
		Use:   "list [--page-size N] [--page-token T] [--email EMAIL] [--format table|json]",
		Short: "List identities (one page) as a table or JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if email != "" {
				q.Set("email", email)
			}
			return runList(cmd, af, &lf, adminIdentitiesPath, q, listTable[identityRow]{
				key: "identities", singular: "identity", plural: "identities",
				header: "ID\tEMAIL\tSTATE\tMFA ENABLED",
				row: func(i identityRow) string {
					return fmt.Sprintf("%d\t%s\t%s\t%t", i.ID, i.Email, i.State, i.MFAEnabled)
				},
			})
		},
	}
	lf.register(c, "identities")
	c.Flags().StringVar(&email, "email", "", "only the identity with this email")
	return c
}

func newIdentitiesGetCmd(af *adminFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Print one identity as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ac, path, err := adminTarget(cmd, af, args[0], identityPath)
			if err != nil {
				return err
			}
			_, err = sendAndPrint(cmd, ac, http.MethodGet, path, nil)
			return err
		},
	}
}

func newIdentitiesDeleteCmd(af *adminFlags) *cobra.Command {
	var yes bool
	c := &cobra.Command{
		Use:   "delete ID [--yes]",
		Short: "Delete an identity and end all its sessions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ac, path, err := adminTarget(cmd, af, args[0], identityPath)
			if err != nil {
				return err
			}
			return runDelete(cmd, ac, path, yes, func(i identityRow) string {
				return fmt.Sprintf("identity %d (%s) and end all its sessions", i.ID, i.Email)
			}, fmt.Sprintf("Deleted identity %s.", args[0]))
		},
	}
	c.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return c
}

// identityPath is the admin path of one identity; ids are positive integers.
func identityPath(arg string) (string, error) {
	id, err := strconv.ParseInt(strings.TrimSpace(arg), 10, 64)
	if err != nil || id <= 0 {
		return "", fmt.Errorf("invalid identity id %q: ids are positive integers", arg)
	}
	return adminIdentitiesPath + "/" + strconv.FormatInt(id, 10), nil
}

// readSecretLine reads the first line of r without its line ending.
func readSecretLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
