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
	"text/tabwriter"

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
				perms := make([]string, 0, len(permissions))
				for _, p := range permissions {
					if p = strings.TrimSpace(p); p != "" {
						perms = append(perms, p)
					}
				}
				body["permissions"] = perms
			}
			if super {
				body["isSuperAdmin"] = true
			}
			ac, err := af.client(cmd)
			if err != nil {
				return err
			}
			var out json.RawMessage
			if err := ac.do(cmd.Context(), http.MethodPost, adminIdentitiesPath, nil, body, &out); err != nil {
				return err
			}
			return printRawJSON(cmd.OutOrStdout(), out)
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
		pageSize         int
		pageToken, email string
		format           string
	)
	c := &cobra.Command{
		Use:   "list [--page-size N] [--page-token T] [--email EMAIL] [--format table|json]",
		Short: "List identities (one page) as a table or JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format must be table or json, not %q", format)
			}
			q := url.Values{}
			if cmd.Flags().Changed("page-size") {
				q.Set("page_size", strconv.Itoa(pageSize))
			}
			if pageToken != "" {
				q.Set("page_token", pageToken)
			}
			if email != "" {
				q.Set("email", email)
			}
			ac, err := af.client(cmd)
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if err := ac.do(cmd.Context(), http.MethodGet, adminIdentitiesPath, q, nil, &raw); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				return printRawJSON(out, raw)
			}
			var page struct {
				Identities    []identityRow `json:"identities"`
				NextPageToken string        `json:"nextPageToken"`
			}
			if err := json.Unmarshal(raw, &page); err != nil {
				return fmt.Errorf("decoding the identity list: %w", err)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tEMAIL\tSTATE\tMFA ENABLED")
			for _, i := range page.Identities {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%t\n", i.ID, i.Email, i.State, i.MFAEnabled)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if page.NextPageToken != "" {
				// On stderr, so the table on stdout stays easy to parse.
				fmt.Fprintf(cmd.ErrOrStderr(), "More identities: --page-token %s\n", page.NextPageToken)
			}
			return nil
		},
	}
	f := c.Flags()
	f.IntVar(&pageSize, "page-size", 100, "identities per page (1 to 500)")
	f.StringVar(&pageToken, "page-token", "", "token of the page to show, from the previous page")
	f.StringVar(&email, "email", "", "only the identity with this email")
	f.StringVarP(&format, "format", "o", "table", "output format: table or json")
	return c
}

func newIdentitiesGetCmd(af *adminFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Print one identity as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := identityPath(args[0])
			if err != nil {
				return err
			}
			ac, err := af.client(cmd)
			if err != nil {
				return err
			}
			var out json.RawMessage
			if err := ac.do(cmd.Context(), http.MethodGet, path, nil, nil, &out); err != nil {
				return err
			}
			return printRawJSON(cmd.OutOrStdout(), out)
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
			path, err := identityPath(args[0])
			if err != nil {
				return err
			}
			ac, err := af.client(cmd)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !yes {
				// Show whom the prompt is about; this also reports an unknown id before asking.
				var i identityRow
				if err := ac.do(cmd.Context(), http.MethodGet, path, nil, nil, &i); err != nil {
					return err
				}
				fmt.Fprintf(out, "Delete identity %d (%s) and end all its sessions? [y/N] ", i.ID, i.Email)
				line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
					return errors.New("aborted")
				}
			}
			if err := ac.do(cmd.Context(), http.MethodDelete, path, nil, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(out, "Deleted identity %s.\n", args[0])
			return nil
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
