package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

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

// clientCreateFlags are the flags of clients create.
type clientCreateFlags struct {
	id, name, scope, method             string
	redirectURIs, grantTypes, respTypes []string
	audience, postLogoutURIs            []string
	skipConsent, public                 bool
}

func (cf *clientCreateFlags) register(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&cf.id, "id", "", "client_id (default: a random UUID chosen by the server)")
	f.StringVar(&cf.name, "name", "", "client_name, shown on the login and consent pages")
	f.StringSliceVar(&cf.redirectURIs, "redirect-uri", nil, "allowed redirect URI (repeatable or comma-separated; exact match)")
	f.StringSliceVar(&cf.postLogoutURIs, "post-logout-redirect-uri", nil, "where RP-initiated logout may send the browser (repeatable or comma-separated; exact match)")
	f.StringSliceVar(&cf.grantTypes, "grant-type", nil, "authorization_code, refresh_token, client_credentials or urn:openid:params:grant-type:ciba (repeatable or comma-separated)")
	f.StringSliceVar(&cf.respTypes, "response-type", nil, "response type (only code is supported)")
	f.StringVar(&cf.scope, "scope", "", `scopes the client may request, space- or comma-separated ("openid offline_access email")`)
	f.StringSliceVar(&cf.audience, "audience", nil, "audience the client may request (repeatable or comma-separated)")
	f.StringVar(&cf.method, "token-endpoint-auth-method", "", "client_secret_basic (server default), client_secret_post or none")
	f.BoolVar(&cf.public, "public", false, "a public client without a secret (token endpoint auth method none, PKCE required)")
	f.BoolVar(&cf.skipConsent, "skip-consent", false, "do not ask users for consent (first-party applications)")
}

// body is the admin API's request body of the flags that were given.
func (cf *clientCreateFlags) body(cmd *cobra.Command) (map[string]any, error) {
	body := map[string]any{}
	if id := strings.TrimSpace(cf.id); id != "" {
		body["client_id"] = id
	}
	if cf.name != "" {
		body["client_name"] = cf.name
	}
	for key, l := range map[string][]string{
		"redirect_uris": cf.redirectURIs, "post_logout_redirect_uris": cf.postLogoutURIs,
		"grant_types": cf.grantTypes, "response_types": cf.respTypes, "audience": cf.audience,
	} {
		if l := cleanList(l); len(l) > 0 {
			body[key] = l
		}
	}
	if cf.scope != "" {
		// Accept "a b" and "a,b" alike; the API wants a space-separated string.
		body["scope"] = strings.Join(strings.Fields(strings.ReplaceAll(cf.scope, ",", " ")), " ")
	}
	switch {
	case cf.public && cmd.Flags().Changed("token-endpoint-auth-method") && cf.method != "none":
		return nil, errors.New("--public means --token-endpoint-auth-method none; give one or the other")
	case cf.public:
		body["token_endpoint_auth_method"] = "none"
	case cf.method != "":
		body["token_endpoint_auth_method"] = cf.method
	}
	if cf.skipConsent {
		body["skip_consent"] = true
	}
	return body, nil
}

func newClientsCreateCmd(af *adminFlags) *cobra.Command {
	var cf clientCreateFlags
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
			body, err := cf.body(cmd)
			if err != nil {
				return err
			}
			ac, err := af.client(cmd)
			if err != nil {
				return err
			}
			out, err := sendAndPrint(cmd, ac, http.MethodPost, adminClientsPath, body)
			if err != nil {
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
	cf.register(c)
	return c
}

func newClientsListCmd(af *adminFlags) *cobra.Command {
	var lf listFlags
	c := &cobra.Command{
		Use:   "list [--page-size N] [--page-token T] [--format table|json]",
		Short: "List OAuth2 clients (one page) as a table or JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runList(cmd, af, &lf, adminClientsPath, url.Values{}, listTable[clientRow]{
				key: "clients", singular: "client", plural: "clients",
				header: "CLIENT ID\tNAME\tGRANT TYPES\tAUTH METHOD\tSKIP CONSENT",
				row: func(c clientRow) string {
					name := c.ClientName
					if name == "" {
						name = "-"
					}
					return fmt.Sprintf("%s\t%s\t%s\t%s\t%t", c.ClientID, name, strings.Join(c.GrantTypes, ","), c.TokenEndpointAuthMethod, c.SkipConsent)
				},
			})
		},
	}
	lf.register(c, "clients")
	return c
}

func newClientsDeleteCmd(af *adminFlags) *cobra.Command {
	var yes bool
	c := &cobra.Command{
		Use:   "delete CLIENT_ID [--yes]",
		Short: "Delete an OAuth2 client; every token issued to it stops working",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ac, path, err := adminTarget(cmd, af, args[0], clientPath)
			if err != nil {
				return err
			}
			return runDelete(cmd, ac, path, yes, func(c clientRow) string {
				label := c.ClientID
				if c.ClientName != "" {
					label += " (" + c.ClientName + ")"
				}
				return "OAuth2 client " + label + " and revoke all its tokens"
			}, fmt.Sprintf("Deleted OAuth2 client %s.", strings.TrimSpace(args[0])))
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
