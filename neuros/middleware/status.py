"""Remember the status code a response was started with."""

from starlette.types import Message, Send


class StatusRecordingSend:
    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500  # what the server error middleware answers if the app raises

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)
