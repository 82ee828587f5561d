package ingest

// routes lists every endpoint of the back-end API.
func (s *Server) routes() {
	s.app.Get("/health", s.handleHealth)
	s.app.Get("/health/ready", s.handleReady)
	s.app.Post("/v1/messages", s.handleMessages)
	s.app.Post("/v1/session-blacklist", s.handleBlacklist)
	s.app.Get("/v1/session-blacklist/:jti", s.handleBlacklistStatus)
	s.app.Get("/v1/users", s.handleUsers)
	s.app.Get("/v1/users/:user/sessions", s.handleUserSessions)
	s.app.Delete("/v1/users/:user/sessions/:jti", s.handleKillSession)
	s.app.Get("/v1/apis", s.handleListAPIs)
	s.app.Post("/v1/apis", s.handleCreateAPI)
	s.app.Get("/v1/apis/:id", s.handleGetAPI)
	s.app.Put("/v1/apis/:id", s.handleUpdateAPI)
	s.app.Delete("/v1/apis/:id", s.handleDeleteAPI)
	s.app.Get("/v1/admin/sessions", s.handleAdminSessions)
	s.app.Get("/v1/admin/health", s.handleAdminHealth)
	s.app.Post("/v1/admin/messages", s.handleAdminSend)
	s.app.Get("/v1/admin/metrics", s.handleAdminMetrics)
	s.app.Use(s.handleNotFound)
}
