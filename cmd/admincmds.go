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

// The list, get, create and delete commands of clients and identities differ only in
// paths, flags and what they print: these are their common steps.

// listFlags are the flags of a list command.
type listFlags struct {
	pageSize          int
	pageToken, format string
}

func (lf *listFlags) register(c *cobra.Command, plural string) {
	f := c.Flags()
	f.IntVar(&lf.pageSize, "page-size", 100, plural+" per page (1 to 500)")
	f.StringVar(&lf.pageToken, "page-token", "", "token of the page to show, from the previous page")
	f.StringVarP(&lf.format, "format", "o", "table", "output format: table or json")
}

// listTable is how a list command prints a page as a table.
type listTable[T any] struct {
	key      string // the page's JSON field holding the items
	singular string
	plural   string
	header   string
	row      func(T) string
}

// runList fetches one page of path (q plus the paging flags) and prints it as JSON or
// as a table; the next page's token goes to stderr, so the table on stdout stays easy
// to parse.
func runList[T any](cmd *cobra.Command, af *adminFlags, lf *listFlags, path string, q url.Values, t listTable[T]) error {
	if lf.format != "table" && lf.format != "json" {
		return fmt.Errorf("--format must be table or json, not %q", lf.format)
	}
	if cmd.Flags().Changed("page-size") {
		q.Set("page_size", strconv.Itoa(lf.pageSize))
	}
	if lf.pageToken != "" {
		q.Set("page_token", lf.pageToken)
	}
	ac, err := af.client(cmd)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := ac.do(cmd.Context(), http.MethodGet, path, q, nil, &raw); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if lf.format == "json" {
		return printRawJSON(out, raw)
	}
	var page map[string]json.RawMessage
	var items []T
	var next string
	if err := errors.Join(json.Unmarshal(raw, &page), unmarshalIfSet(page[t.key], &items), unmarshalIfSet(page["nextPageToken"], &next)); err != nil {
		return fmt.Errorf("decoding the %s list: %w", t.singular, err)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, t.header)
	for _, it := range items {
		fmt.Fprintln(tw, t.row(it))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "More %s: --page-token %s\n", t.plural, next)
	}
	return nil
}

// unmarshalIfSet decodes raw into v unless the field was absent.
func unmarshalIfSet(raw json.RawMessage, v any) error {
	if raw == nil {
		return nil
	}
	return json.Unmarshal(raw, v)
}

// adminTarget is the client and the admin path of the one object arg names.
func adminTarget(cmd *cobra.Command, af *adminFlags, arg string, pathOf func(string) (string, error)) (*adminClient, string, error) {
	path, err := pathOf(arg)
	if err != nil {
		return nil, "", err
	}
	ac, err := af.client(cmd)
	if err != nil {
		return nil, "", err
	}
	return ac, path, nil
}

// sendAndPrint sends body to path and prints the answer as JSON.
func sendAndPrint(cmd *cobra.Command, ac *adminClient, method, path string, body any) (json.RawMessage, error) {
	var out json.RawMessage
	if err := ac.do(cmd.Context(), method, path, nil, body, &out); err != nil {
		return nil, err
	}
	return out, printRawJSON(cmd.OutOrStdout(), out)
}

// runDelete deletes the object at path. Unless yes, it first asks "Delete <label>?",
// label made of the object fetched into row: that also reports an unknown id before
// asking.
func runDelete[T any](cmd *cobra.Command, ac *adminClient, path string, yes bool, label func(T) string, done string) error {
	out := cmd.OutOrStdout()
	if !yes {
		var row T
		if err := ac.do(cmd.Context(), http.MethodGet, path, nil, nil, &row); err != nil {
			return err
		}
		fmt.Fprintf(out, "Delete %s? [y/N] ", label(row))
		line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return errors.New("aborted")
		}
	}
	if err := ac.do(cmd.Context(), http.MethodDelete, path, nil, nil, nil); err != nil {
		return err
	}
	fmt.Fprintln(out, done)
	return nil
}
