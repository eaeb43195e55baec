// JSON calls to the server that served this page (same origin: the Host check and CSP allow nothing else).

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status; // 0: the server could not be reached
  }
}

async function call(route, init) {
  let response;
  try {
    response = await fetch(route, init);
  } catch (error) {
    throw new ApiError(0, `could not reach the server (${route}): ${error.message}`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: reported below by status
  }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`;
    throw new ApiError(response.status, detail);
  }
  return body;
}

export function getJson(route) {
  return call(route, { method: "GET" });
}

export function postJson(route, body) {
  return call(route, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}
