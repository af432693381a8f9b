package x

import (
	"crypto/sha256"
	"encoding/hex"
)

// SHA256Hex is how tokens, challenges and verifiers are stored and audited: the hex
// SHA-256 of the value, never the value.
func SHA256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
