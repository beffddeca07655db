from rest_framework.routers import SimpleRouter

from llm.views import MessageViewSet

router = SimpleRouter()
router.register(r"interactions/(?P<interaction_id>[^/.]+)/messages", MessageViewSet, basename="message")

urlpatterns = router.urls
