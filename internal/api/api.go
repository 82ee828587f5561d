// Package api holds the JSON conventions both binaries' HTTP APIs share:
// every error is {"error": "..."} with a fitting status, and no error leaves
// a handler without being turned into one.
package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"

	"github.com/gofiber/fiber/v2"
)

// Error is an error with the HTTP status and message a client should see.
type Error struct {
	Status     int
	Message    string
	RetryAfter int // seconds; sets Retry-After when > 0
	// Quiet marks a refusal that comes in floods (a limit reached): it is
	// logged at debug, and counted in metrics where it is made.
	Quiet bool
}

func (e *Error) Error() string { return strconv.Itoa(e.Status) + " " + e.Message }

// NewError returns an *Error with status and msg as they are; handlers
// return it and ErrorHandler writes it.
func NewError(status int, msg string) *Error { return &Error{Status: status, Message: msg} }

// Unavailable is a 503 that tells the client when to retry.
func Unavailable(msg string, retryAfter int) *Error {
	return &Error{Status: fiber.StatusServiceUnavailable, Message: msg, RetryAfter: retryAfter}
}

type errorBody struct {
	Error string `json:"error"`
}

// Write sends e as the response.
func Write(c *fiber.Ctx, e *Error) error {
	if e.RetryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(e.RetryAfter))
	}
	return JSON(c, e.Status, errorBody{Error: e.Message})
}

// JSON sends v as a JSON response with status.
func JSON(c *fiber.Ctx, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	return c.Send(b)
}

// ErrorHandler turns whatever a handler (or fasthttp itself: oversized
// bodies, bad requests) returned into a JSON error. Server errors are
// logged; client errors are logged once, at info.
func ErrorHandler(log *slog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		var e *Error
		var fe *fiber.Error
		switch {
		case errors.As(err, &e):
		case errors.As(err, &fe):
			e = &Error{Status: fe.Code, Message: fe.Message}
			switch fe.Code {
			case fiber.StatusRequestEntityTooLarge:
				e.Message = "request body too large"
			case fiber.StatusRequestTimeout, fiber.StatusBadGateway:
				// A connection that sent no complete request head in
				// time, or broke before it did (fiber's 502 for a read
				// error): nothing failed here, and a flood of idle
				// connections makes thousands.
				e.Quiet = true
			}
		default:
			e = &Error{Status: fiber.StatusInternalServerError, Message: "internal error"}
		}
		switch {
		case e.Quiet:
			log.Debug("request refused", "method", c.Method(), "path", c.Path(), "status", e.Status, "err", e.Message)
		case e.Status >= 500:
			log.Error("request failed", "method", c.Method(), "path", c.Path(), "status", e.Status, "err", err)
		default:
			log.Info("request refused", "method", c.Method(), "path", c.Path(), "status", e.Status, "err", e.Message)
		}
		return Write(c, e)
	}
}
