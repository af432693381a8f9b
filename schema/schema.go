// Package schema compiles the JSON schemas under .schema/ and validates documents
// against them, reporting errors by the dotted key of the offending value.
package schema

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	pvauth "github.com/pvpipe/pvauth"
)

// Validator validates documents (already decoded JSON: maps, slices, float64/json.Number...).
type Validator struct {
	s *jsonschema.Schema
}

// Compile compiles a schema document.
func Compile(name string, raw []byte) (*Validator, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	url := "mem://" + name
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", name, err)
	}
	return &Validator{s: s}, nil
}

// Config returns the validator of the configuration.
func Config() (*Validator, error) { return Compile("config.schema.json", pvauth.ConfigSchema) }

// IdentityTraits returns the validator of identity traits.
func IdentityTraits() (*Validator, error) {
	return Compile("identity.schema.json", pvauth.IdentitySchema)
}

// Problem is one validation failure at a dotted key ("serve.public.port").
type Problem struct {
	Key     string
	Message string
}

// Error lists every problem found; its message names each key.
type Error struct{ Problems []Problem }

func (e *Error) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		if p.Key == "" {
			parts[i] = p.Message
		} else {
			parts[i] = fmt.Sprintf("%s: %s", p.Key, p.Message)
		}
	}
	return strings.Join(parts, "; ")
}

var printer = message.NewPrinter(language.English)

// Validate checks doc. The document must be made of JSON types (use Normalize first for
// values decoded by YAML or built in Go).
func (v *Validator) Validate(doc any) error {
	err := v.s.Validate(doc)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	seen := map[string]bool{}
	var out []Problem
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			p := Problem{Key: strings.Join(e.InstanceLocation, "."), Message: e.ErrorKind.LocalizedString(printer)}
			if k := fmt.Sprintf("%s|%s", p.Key, p.Message); !seen[k] {
				seen[k] = true
				out = append(out, p)
			}
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return &Error{Problems: out}
}

// Normalize converts a document built from Go values (YAML maps, ints, []string) into
// the JSON types the validator expects.
func Normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = Normalize(x)
		}
		return m
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = Normalize(x)
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, x := range t {
			s[i] = Normalize(x)
		}
		return s
	case []string:
		s := make([]any, len(t))
		for i, x := range t {
			s[i] = x
		}
		return s
	case int:
		return float64(t)
	case int64:
		return float64(t)
	case int32:
		return float64(t)
	case uint64:
		return float64(t)
	case float32:
		return float64(t)
	default:
		return v
	}
}
