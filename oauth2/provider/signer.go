package provider

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite/token/jwt"

	"github.com/pvpipe/pvauth/x"
)

// Signer implements fosite's jwt.Signer over the KeyManager: it signs with the active
// key and verifies with whichever key the token's kid names.
type Signer struct {
	m        *KeyManager
	verified *verifiedCache
}

var _ jwt.Signer = (*Signer)(nil)

// Signer returns the fosite signer of these keys.
func (m *KeyManager) Signer() *Signer {
	return &Signer{m: m, verified: &verifiedCache{m: map[[32]byte]verifiedToken{}, max: 10000}}
}

// verifiedCache remembers tokens whose signature already verified, keyed by the hash of
// the whole token: the same bytes cannot verify differently later, and the signature
// check dominates the cost of introspection. Expiry is still checked on every use by
// the claims' Valid, and revocation by the store; entries leave with their token.
type verifiedCache struct {
	mu  sync.Mutex
	m   map[[32]byte]verifiedToken
	max int
}

type verifiedToken struct {
	tok *jwt.Token
	exp time.Time
}

func (c *verifiedCache) get(key [32]byte) *jwt.Token {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[key]
	if !ok {
		return nil
	}
	if time.Now().After(v.exp) {
		delete(c.m, key)
		return nil
	}
	return v.tok
}

func (c *verifiedCache) put(key [32]byte, t *jwt.Token) {
	exp := num(t.Claims["exp"])
	if exp == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		// Drop expired entries and, if still full, an arbitrary tenth.
		now, n := time.Now(), 0
		for k, v := range c.m {
			if now.After(v.exp) || n < c.max/10 {
				delete(c.m, k)
				n++
			}
		}
	}
	c.m[key] = verifiedToken{tok: t, exp: time.Unix(exp, 0)}
}

func (s *Signer) Generate(ctx context.Context, claims jwt.MapClaims, header jwt.Mapper) (string, string, error) {
	k := s.m.signingKey(ctx)
	if k == nil {
		return "", "", errors.New("no active signing key")
	}
	tok := jwt.NewWithClaims(jose.SignatureAlgorithm(k.Alg), claims)
	if header != nil {
		for hk, hv := range header.ToMap() {
			tok.Header[hk] = hv
		}
	}
	tok.Header["kid"] = k.KID
	raw, err := tok.SignedString(k.Private)
	if err != nil {
		return "", "", err
	}
	sig, err := s.GetSignature(ctx, raw)
	return raw, sig, err
}

func (s *Signer) Decode(ctx context.Context, token string) (*jwt.Token, error) {
	key := sha256.Sum256([]byte(token))
	if t := s.verified.get(key); t != nil {
		// Re-check the time-based claims on every use.
		if err := t.Claims.Valid(); err != nil {
			return t, err
		}
		return t, nil
	}
	t, err := s.decode(ctx, token)
	if err == nil && t.Valid() {
		s.verified.put(key, t)
	}
	return t, err
}

func (s *Signer) decode(ctx context.Context, token string) (*jwt.Token, error) {
	t, err := jwt.ParseWithClaims(token, jwt.MapClaims{}, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, err := s.m.lookup(ctx, kid)
		if err != nil {
			return nil, err
		}
		if k == nil {
			return nil, &jwt.ValidationError{Errors: jwt.ValidationErrorUnverifiable}
		}
		if string(t.Method) != k.Alg {
			return nil, &jwt.ValidationError{Errors: jwt.ValidationErrorSignatureInvalid}
		}
		return k.Private.Public(), nil
	})
	// The parser hides the key lookup's error inside a ValidationError (no Unwrap): a
	// database failure comes out as itself, so callers answer 503, not "invalid token".
	var ve *jwt.ValidationError
	if errors.As(err, &ve) && ve.Inner != nil && x.IsUnavailable(ve.Inner) {
		return nil, ve.Inner
	}
	return t, err
}

func (s *Signer) Validate(ctx context.Context, token string) (string, error) {
	if _, err := s.Decode(ctx, token); err != nil {
		return "", err
	}
	return s.GetSignature(ctx, token)
}

func (s *Signer) GetSignature(_ context.Context, token string) (string, error) {
	i := strings.LastIndexByte(token, '.')
	if i < 0 || strings.Count(token, ".") != 2 {
		return "", errors.New("header, body and signature must all be set")
	}
	return token[i+1:], nil
}

func (s *Signer) Hash(_ context.Context, in []byte) ([]byte, error) {
	sum := sha256.Sum256(in)
	return sum[:], nil
}

func (s *Signer) GetSigningMethodLength(context.Context) int { return sha256.Size }
