from rest_framework.routers import SimpleRouter

from llm.views import ChatMessageViewSet

router = SimpleRouter()
router.register(r"interactions/(?P<interaction_id>[^/.]+)/messages", ChatMessageViewSet, basename="message")

urlpatterns = router.urls
