// Package push delivers data messages to devices: through Firebase Cloud Messaging when
// push.fcm is enabled, nowhere otherwise.
package push

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"

	"github.com/pvpipe/pvauth/driver/config"
)

// ErrUnregistered means the token is no longer valid: forget it.
var ErrUnregistered = errors.New("push token is unregistered")

// Sender sends one data message to one device token.
type Sender interface {
	Send(ctx context.Context, token string, data map[string]string) error
}

// SenderProvider is implemented by the registry.
type SenderProvider interface {
	PushSender() Sender
}

// Noop drops every message (push disabled).
type Noop struct{}

func (Noop) Send(context.Context, string, map[string]string) error { return nil }

// SendTimeout bounds one send: the SDK retries 5xx answers for several seconds.
const SendTimeout = 5 * time.Second

// FCM sends through the Firebase Admin SDK.
type FCM struct{ client *messaging.Client }

// New returns the sender push.fcm configures.
func New(ctx context.Context, c config.FCM) (Sender, error) {
	if !c.Enabled {
		return Noop{}, nil
	}
	if c.ProjectID == "" {
		return nil, errors.New("push.fcm.project_id is required when push.fcm.enabled is true")
	}
	var opts []option.ClientOption
	if c.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(strings.TrimRight(c.Endpoint, "/")+"/v1"))
	}
	switch {
	case c.CredentialsFile != "":
		opts = append(opts, option.WithCredentialsFile(c.CredentialsFile))
	case c.Endpoint != "":
		// A relay or a test double: no Google credentials to present.
		opts = append(opts, option.WithoutAuthentication())
	default:
		return nil, errors.New("push.fcm.credentials_file is required unless push.fcm.endpoint points to a relay")
	}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: c.ProjectID}, opts...)
	if err != nil {
		return nil, fmt.Errorf("firebase: %w", err)
	}
	client, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("firebase messaging: %w", err)
	}
	return &FCM{client: client}, nil
}

// Send delivers a data-only, high-priority message.
func (f *FCM) Send(ctx context.Context, token string, data map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, SendTimeout)
	defer cancel()
	_, err := f.client.Send(ctx, &messaging.Message{
		Token:   token,
		Data:    data,
		Android: &messaging.AndroidConfig{Priority: "high"},
		APNS: &messaging.APNSConfig{
			Headers: map[string]string{"apns-priority": "10", "apns-push-type": "background"},
			Payload: &messaging.APNSPayload{Aps: &messaging.Aps{ContentAvailable: true}},
		},
	})
	if err != nil && messaging.IsUnregistered(err) {
		return fmt.Errorf("%w: %v", ErrUnregistered, err)
	}
	return err
}
