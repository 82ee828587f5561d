package edge

// routes lists every endpoint of the public port.
func (s *Server) routes() {
	s.app.Get("/health", s.handleHealth)
	s.app.Get("/health/ready", s.handleReady)
	s.app.Get("/socket/sse", s.handleSSE)
	s.app.Options("/socket/sse", s.handlePreflight)
	s.app.Get("/socket/websocket", s.handleWebSocket)
	s.app.Get("/socket/longpoll", s.handleLongPoll)
	s.app.Post("/socket/longpoll", s.handlePhoenixLongPollPost)
	s.app.Options("/socket/longpoll", s.handlePreflight)
	s.demoRoutes() // only with DEMO_ENABLED
	// Everything else: the API gateway (RIG's forward "/").
	s.app.Use(s.handleProxy)
}
