// Package pvauth embeds the files the binary needs from the repository root: the default
// configuration and the JSON schemas under .schema/.
package pvauth

import _ "embed"

// DefaultConfig is the annotated config.yaml; its values are the defaults.
//
//go:embed config.yaml
var DefaultConfig []byte

// ConfigSchema validates the merged configuration.
//
//go:embed .schema/config.schema.json
var ConfigSchema []byte

// IdentitySchema validates identity traits.
//
//go:embed .schema/identity.schema.json
var IdentitySchema []byte

// OpenAPI describes every route.
//
//go:embed .schema/openapi.yaml
var OpenAPI []byte
