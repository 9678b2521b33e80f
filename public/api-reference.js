// The interactive API reference at /docs: swagger-ui, served by this Worker, over /openapi.json.
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#reference", deepLinking: true, persistAuthorization: false });
