package ingest

// routes lists every endpoint of the back-end API.
func (s *Server) routes() {
	s.app.Get("/health", s.handleHealth)
	s.app.Get("/health/ready", s.handleReady)
	s.app.Post("/v1/messages", s.handleMessages)
	s.app.Use(s.handleNotFound)
}
