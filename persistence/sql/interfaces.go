package sql

import (
	"github.com/pvpipe/pvauth/audit"
	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/identity"
	"github.com/pvpipe/pvauth/janitor"
	"github.com/pvpipe/pvauth/oauth2"
	"github.com/pvpipe/pvauth/oauth2/provider"
	"github.com/pvpipe/pvauth/selfservice/biometric"
	"github.com/pvpipe/pvauth/selfservice/confirmation"
	"github.com/pvpipe/pvauth/selfservice/passkey"
	"github.com/pvpipe/pvauth/selfservice/password"
)

// Every domain storage interface the one Persister implements, each in its
// persister_<domain>.go file; persistence/conformance checks their contracts.
var (
	_ identity.Persister      = (*Persister)(nil) // persister_identity.go
	_ provider.TokenPersister = (*Persister)(nil) // persister_token.go
	_ provider.KeyPersister   = (*Persister)(nil) // persister_token.go
	_ oauth2.Persister        = (*Persister)(nil) // persister_oauth2.go, persister_login_session.go
	_ password.FlowPersister  = (*Persister)(nil) // persister_login.go
	_ passkey.Persister       = (*Persister)(nil) // persister_passkey.go
	_ devicekey.Persister     = (*Persister)(nil) // persister_device.go
	_ biometric.Persister     = (*Persister)(nil) // persister_device.go
	_ confirmation.Persister  = (*Persister)(nil) // persister_confirmation.go
	_ audit.Persister         = (*Persister)(nil) // persister_audit.go
	_ audit.Transactor        = (*Persister)(nil)
	_ audit.Pinger            = (*Persister)(nil)
	_ janitor.Persister       = (*Persister)(nil) // persister_janitor.go
)
