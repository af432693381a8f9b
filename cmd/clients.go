package cmd

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

const adminClientsPath = "/admin/clients"

// clientRow is what the list table and the delete prompt show of an OAuth2 client.
type clientRow struct {
	ClientID                string   `json:"client_id"`
	ClientName              string   `json:"client_name"`
	GrantTypes              []string `json:"grant_types"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	SkipConsent             bool     `json:"skip_consent"`
}

func newClientsCmd() *cobra.Command {
	var af adminFlags
	c := &cobra.Command{
		Use:     "clients",
		Aliases: []string{"client"},
		Short:   "Manage OAuth2 clients through the admin API of a running server",
		Long: `Manage OAuth2 clients through the admin API of a running pvauth (the admin port,
default ` + defaultAdminEndpoint + `). When the server sets serve.admin.api_keys, pass one
with --api-key or the environment variable ` + envAdminAPIKey + `.`,
	}
	af.register(c)
	c.AddCommand(
		newClientsCreateCmd(&af),
		newClientsListCmd(&af),
		newClientsDeleteCmd(&af),
	)
	return c
}

// cleanList trims the entries of a repeatable/comma-separated flag and drops empty ones.
func cleanList(in []string) []string {
	out := make([]string, 0, len(in))
	for _, v := range in {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func newClientsCreateCmd(af *adminFlags) *cobra.Command {
	var (
		id, name, scope, method             string
		redirectURIs, grantTypes, respTypes []string
		audience, postLogoutURIs            []string
		skipConsent, public                 bool
	)
	c := &cobra.Command{
		Use:   "create [--id ID] [--name NAME] [--grant-type G]... [--redirect-uri URI]... [--post-logout-redirect-uri URI]... [--scope 'a b'] [--audience A]... [--token-endpoint-auth-method M | --public] [--skip-consent]",
		Short: "Register an OAuth2 client and print it as JSON, with its secret (shown only this once)",
		Long: `Register an OAuth2 client. The answer is printed as JSON and includes client_secret
for confidential clients: the server stores only a keyed hash of it, so this is the only
time it is shown. Without --grant-type the client gets authorization_code and refresh_token,
which need at least one --redirect-uri.`,
		Example: `  pvauth clients create --name "Reporting job" --grant-type client_credentials --scope "reports.read" --audience https://reports.example.com
  pvauth clients create --name "Docs SPA" --public --redirect-uri https://docs.example.com/callback --post-logout-redirect-uri https://docs.example.com/ --scope "openid offline_access email"
  pvauth clients create --name "Call centre" --grant-type urn:openid:params:grant-type:ciba --scope "openid email"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]any{}
			if id = strings.TrimSpace(id); id != "" {
				body["client_id"] = id
			}
			if name != "" {
				body["client_name"] = name
			}
			if l := cleanList(redirectURIs); len(l) > 0 {
				body["redirect_uris"] = l
			}
			if l := cleanList(postLogoutURIs); len(l) > 0 {
				body["post_logout_redirect_uris"] = l
			}
			if l := cleanList(grantTypes); len(l) > 0 {
				body["grant_types"] = l
			}
			if l := cleanList(respTypes); len(l) > 0 {
				body["response_types"] = l
			}
			if scope != "" {
				// Accept "a b" and "a,b" alike; the API wants a space-separated string.
				body["scope"] = strings.Join(strings.Fields(strings.ReplaceAll(scope, ",", " ")), " ")
			}
			if l := cleanList(audience); len(l) > 0 {
				body["audience"] = l
			}
			switch {
			case public && cmd.Flags().Changed("token-endpoint-auth-method") && method != "none":
				return errors.New("--public means --token-endpoint-auth-method none; give one or the other")
			case public:
				body["token_endpoint_auth_method"] = "none"
			case method != "":
				body["token_endpoint_auth_method"] = method
			}
			if skipConsent {
				body["skip_consent"] = true
			}
			ac, err := af.client(cmd)
			if err != nil {
				return err
			}
			var out json.RawMessage
			if err := ac.do(cmd.Context(), http.MethodPost, adminClientsPath, nil, body, &out); err != nil {
				return err
			}
			if err := printRawJSON(cmd.OutOrStdout(), out); err != nil {
				return err
			}
			var created struct {
				ClientSecret string `json:"client_secret"`
			}
			if json.Unmarshal(out, &created) == nil && created.ClientSecret != "" {
				// On stderr, so stdout stays one JSON document.
				fmt.Fprintln(cmd.ErrOrStderr(), "Store client_secret now: it is not shown again.")
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&id, "id", "", "client_id (default: a random UUID chosen by the server)")
	f.StringVar(&name, "name", "", "client_name, shown on the login and consent pages")
	f.StringSliceVar(&redirectURIs, "redirect-uri", nil, "allowed redirect URI (repeatable or comma-separated; exact match)")
	f.StringSliceVar(&postLogoutURIs, "post-logout-redirect-uri", nil, "where RP-initiated logout may send the browser (repeatable or comma-separated; exact match)")
	f.StringSliceVar(&grantTypes, "grant-type", nil, "authorization_code, refresh_token, client_credentials or urn:openid:params:grant-type:ciba (repeatable or comma-separated)")
	f.StringSliceVar(&respTypes, "response-type", nil, "response type (only code is supported)")
	f.StringVar(&scope, "scope", "", `scopes the client may request, space- or comma-separated ("openid offline_access email")`)
	f.StringSliceVar(&audience, "audience", nil, "audience the client may request (repeatable or comma-separated)")
	f.StringVar(&method, "token-endpoint-auth-method", "", "client_secret_basic (server default), client_secret_post or none")
	f.BoolVar(&public, "public", false, "a public client without a secret (token endpoint auth method none, PKCE required)")
	f.BoolVar(&skipConsent, "skip-consent", false, "do not ask users for consent (first-party applications)")
	return c
}

func newClientsListCmd(af *adminFlags) *cobra.Command {
	var (
		pageSize          int
		pageToken, format string
	)
	c := &cobra.Command{
		Use:   "list [--page-size N] [--page-token T] [--format table|json]",
		Short: "List OAuth2 clients (one page) as a table or JSON",
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
			ac, err := af.client(cmd)
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if err := ac.do(cmd.Context(), http.MethodGet, adminClientsPath, q, nil, &raw); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				return printRawJSON(out, raw)
			}
			var page struct {
				Clients       []clientRow `json:"clients"`
				NextPageToken string      `json:"nextPageToken"`
			}
			if err := json.Unmarshal(raw, &page); err != nil {
				return fmt.Errorf("decoding the client list: %w", err)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "CLIENT ID\tNAME\tGRANT TYPES\tAUTH METHOD\tSKIP CONSENT")
			for _, c := range page.Clients {
				name := c.ClientName
				if name == "" {
					name = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\n", c.ClientID, name, strings.Join(c.GrantTypes, ","), c.TokenEndpointAuthMethod, c.SkipConsent)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if page.NextPageToken != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "More clients: --page-token %s\n", page.NextPageToken)
			}
			return nil
		},
	}
	f := c.Flags()
	f.IntVar(&pageSize, "page-size", 100, "clients per page (1 to 500)")
	f.StringVar(&pageToken, "page-token", "", "token of the page to show, from the previous page")
	f.StringVarP(&format, "format", "o", "table", "output format: table or json")
	return c
}

func newClientsDeleteCmd(af *adminFlags) *cobra.Command {
	var yes bool
	c := &cobra.Command{
		Use:   "delete CLIENT_ID [--yes]",
		Short: "Delete an OAuth2 client; every token issued to it stops working",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := clientPath(args[0])
			if err != nil {
				return err
			}
			ac, err := af.client(cmd)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !yes {
				// Show what the prompt is about; this also reports an unknown id before asking.
				var c clientRow
				if err := ac.do(cmd.Context(), http.MethodGet, path, nil, nil, &c); err != nil {
					return err
				}
				label := c.ClientID
				if c.ClientName != "" {
					label += " (" + c.ClientName + ")"
				}
				fmt.Fprintf(out, "Delete OAuth2 client %s and revoke all its tokens? [y/N] ", label)
				line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
					return errors.New("aborted")
				}
			}
			if err := ac.do(cmd.Context(), http.MethodDelete, path, nil, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(out, "Deleted OAuth2 client %s.\n", strings.TrimSpace(args[0]))
			return nil
		},
	}
	c.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return c
}

// clientPath is the admin path of one client (the request URL escapes it).
func clientPath(arg string) (string, error) {
	id := strings.TrimSpace(arg)
	if id == "" || len(id) > 255 || strings.Contains(id, "/") {
		return "", fmt.Errorf("invalid client id %q", arg)
	}
	return adminClientsPath + "/" + id, nil
}
